"""The small expression language of feature declarations (``where`` filters, ``expr`` values).

An expression is parsed once into a tree of tuples and evaluated by walking it: over whole
columns (the batch engine) or over one row (the naive reference, one event at a time).
Nothing is ever passed to ``eval``. Grammar, loosest binding first::

    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum
                    | ["not"] "in" "(" literal ("," literal)* ")"
                    | "is" ["not"] "missing"]
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := number | 'string' | "string" | true | false | name
             | function "(" or ")" | "(" or ")"

A name is a column of the table the feature reads, a setting of ``FeaturesConfig``
(``small_amount``, ...) or, in an ``expr``, a feature declared before it. Functions:
``hour``, ``day_of_week`` (of a timestamp, UTC) and ``abs``.

Missing values: arithmetic and comparisons with a missing operand are missing; ``and``,
``or`` and ``not`` follow three-valued logic (``false and missing`` is false, ``true or
missing`` is true); ``x is missing`` is never missing. A filter keeps the rows where its
expression is true, so a missing result drops the row. An ``expr`` feature is 1/0 for
true/false and missing where the expression is.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd

FUNCTIONS = ("hour", "day_of_week", "abs")
_COMPARE = ("<", "<=", ">", ">=", "==", "!=")
_KEYWORDS = {"and", "or", "not", "in", "is", "missing", "true", "false"}
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|,)
)""", re.VERBOSE)


class ExpressionError(ValueError):
    """An expression that does not parse; the message says where."""


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> tuple:
    """Parse an expression into its tree (trees are immutable tuples: each text is parsed
    once per process).

    Parameters
    ----------
    text : str

    Returns
    -------
    tuple
        Nodes are ``("num", float)``, ``("str", str)``, ``("bool", bool)``, ``("name",
        str)``, ``("call", fn, arg)``, ``("neg", x)``, ``("arith", op, a, b)``,
        ``("cmp", op, a, b)``, ``("in", x, values, negated)``, ``("missing", x, negated)``,
        ``("not", x)``, ``("and", a, b)``, ``("or", a, b)``.

    Raises
    ------
    ExpressionError
        With the position of the first token that does not fit.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be a non-empty string")
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"unexpected character {text[pos:].lstrip()[:1]!r} at "
                                  f"position {len(text) - len(text[pos:].lstrip())} of {text!r}")
        kind = m.lastgroup
        value = m.group(kind)
        tokens.append((kind, value, m.start(kind)))
        pos = m.end()
    return _Parser(text, tokens).parse()


class _Parser:
    def __init__(self, text, tokens):
        self.text, self.tokens, self.i = text, tokens, 0

    def _peek(self, value=None, kind=None):
        if self.i >= len(self.tokens):
            return False
        k, v, _ = self.tokens[self.i]
        if kind is not None and k != kind:
            return False
        return value is None or (v == value and k in ("op", "name"))

    def _take(self, value=None, kind=None):
        if not self._peek(value, kind):
            self._fail(f"expected {value or kind!r}")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, what):
        if self.i < len(self.tokens):
            _, v, at = self.tokens[self.i]
            raise ExpressionError(f"{what}, found {v!r} at position {at} of {self.text!r}")
        raise ExpressionError(f"{what}, but {self.text!r} ends there")

    def parse(self):
        tree = self._or()
        if self.i < len(self.tokens):
            self._fail("expected the end of the expression")
        return tree

    def _or(self):
        node = self._and()
        while self._peek("or"):
            self.i += 1
            node = ("or", node, self._and())
        return node

    def _and(self):
        node = self._not()
        while self._peek("and"):
            self.i += 1
            node = ("and", node, self._not())
        return node

    def _not(self):
        if self._peek("not"):
            self.i += 1
            return ("not", self._not())
        return self._compare()

    def _compare(self):
        left = self._sum()
        if self.i < len(self.tokens) and self.tokens[self.i][1] in _COMPARE \
                and self.tokens[self.i][0] == "op":
            op = self._take()[1]
            return ("cmp", op, left, self._sum())
        negated = False
        if self._peek("not") and self.i + 1 < len(self.tokens) and \
                self.tokens[self.i + 1][1] == "in":
            self.i += 1
            negated = True
        if self._peek("in"):
            self.i += 1
            self._take("(")
            values = [self._literal()]
            while self._peek(","):
                self.i += 1
                values.append(self._literal())
            self._take(")")
            return ("in", left, tuple(values), negated)
        if negated:
            self._fail("expected 'in'")
        if self._peek("is"):
            self.i += 1
            neg = False
            if self._peek("not"):
                self.i += 1
                neg = True
            self._take("missing")
            return ("missing", left, neg)
        return left

    def _literal(self):
        negative = False
        if self._peek("-"):
            self.i += 1
            negative = True
        kind, value, _ = self._take()
        if kind == "number":
            return -float(value) if negative else float(value)
        if kind == "string" and not negative:
            return value[1:-1]
        if kind == "name" and value in ("true", "false") and not negative:
            return value == "true"
        self.i -= 1
        self._fail("expected a number or a string in the list")

    def _sum(self):
        node = self._product()
        while self._peek("+") or self._peek("-"):
            op = self._take()[1]
            node = ("arith", op, node, self._product())
        return node

    def _product(self):
        node = self._unary()
        while self._peek("*") or self._peek("/"):
            op = self._take()[1]
            node = ("arith", op, node, self._unary())
        return node

    def _unary(self):
        if self._peek("-"):
            self.i += 1
            return ("neg", self._unary())
        return self._atom()

    def _atom(self):
        if self.i >= len(self.tokens):
            self._fail("expected a value")
        kind, value, _ = self.tokens[self.i]
        if kind == "number":
            self.i += 1
            return ("num", float(value))
        if kind == "string":
            self.i += 1
            return ("str", value[1:-1])
        if kind == "op" and value == "(":
            self.i += 1
            node = self._or()
            self._take(")")
            return node
        if kind == "name":
            if value in ("true", "false"):
                self.i += 1
                return ("bool", value == "true")
            if value in _KEYWORDS:
                self._fail("expected a value")
            self.i += 1
            if self._peek("("):
                if value not in FUNCTIONS:
                    self.i -= 1
                    self._fail(f"unknown function (the functions are {list(FUNCTIONS)})")
                self.i += 1
                arg = self._or()
                self._take(")")
                return ("call", value, arg)
            return ("name", value)
        self._fail("expected a value")


def names(tree: tuple) -> set[str]:
    """Every name an expression reads."""
    kind = tree[0]
    if kind == "name":
        return {tree[1]}
    if kind in ("num", "str", "bool"):
        return set()
    if kind == "call":
        return names(tree[2])
    if kind in ("neg", "not"):
        return names(tree[1])
    if kind in ("in", "missing"):
        return names(tree[1])
    return names(tree[2]) | names(tree[3]) if kind in ("arith", "cmp") else \
        names(tree[1]) | names(tree[2])


# -- over whole columns ----------------------------------------------------------------
# A value is (data, missing): data a numpy array (float, bool, int64 microseconds for
# timestamps) or a pandas Series of strings, missing a boolean mask or None (nothing missing).

Resolve = Callable[[str], object]


def _or_masks(a, b):
    if a is None:
        return b
    return a if b is None else a | b


def evaluate(tree: tuple, resolve: Resolve, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate an expression over ``n`` rows.

    Parameters
    ----------
    tree : tuple
        From :func:`parse`.
    resolve : callable
        Name -> a column (pandas Series or numpy array of length ``n``) or a scalar.
    n : int

    Returns
    -------
    values, missing : ndarray
        Float values (booleans as 1.0/0.0) and where the result is missing.
    """
    data, missing = _eval(tree, resolve, n)
    if isinstance(data, pd.Series):
        raise ExpressionError("an expression's result must be a number or true/false, not text")
    out = np.asarray(data, dtype=float)
    if out.ndim == 0:
        out = np.full(n, float(out))
    missing = np.zeros(n, bool) if missing is None else np.asarray(missing, bool)
    return out, missing


def mask(tree: tuple, resolve: Resolve, n: int) -> np.ndarray:
    """Rows where the expression is true (a missing result is not true)."""
    values, missing = evaluate(tree, resolve, n)
    return (values != 0) & ~missing


def _column(value, n):
    if isinstance(value, pd.Series):
        dtype = value.dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
            miss = value.isna().to_numpy()
            return value.astype("datetime64[us, UTC]").array.asi8.astype(np.int64), miss
        if pd.api.types.is_bool_dtype(dtype):
            miss = value.isna().to_numpy()
            return value.fillna(False).to_numpy(dtype=bool), (miss if miss.any() else None)
        if pd.api.types.is_numeric_dtype(dtype):
            data = value.to_numpy(dtype=float, na_value=np.nan)
            miss = np.isnan(data)
            return data, (miss if miss.any() else None)
        strings = value.astype("str") if not pd.api.types.is_string_dtype(dtype) else value
        miss = value.isna().to_numpy()
        return strings.reset_index(drop=True), (miss if miss.any() else None)
    if isinstance(value, np.ndarray):
        data = value.astype(float) if value.dtype != bool else value
        miss = np.isnan(data) if data.dtype.kind == "f" else None
        return data, (miss if miss is not None and miss.any() else None)
    if isinstance(value, str):
        return pd.Series([value] * n, dtype="str"), None
    if isinstance(value, bool):
        return np.full(n, value), None
    return np.full(n, float(value)), None


def _eval(t, resolve, n):
    kind = t[0]
    if kind == "num":
        return np.full(n, t[1]), None
    if kind == "str":
        return pd.Series([t[1]] * n, dtype="str"), None
    if kind == "bool":
        return np.full(n, t[1]), None
    if kind == "name":
        return _column(resolve(t[1]), n)
    if kind == "call":
        data, miss = _eval(t[2], resolve, n)
        if isinstance(data, pd.Series):
            raise ExpressionError(f"{t[1]}() takes a number or a timestamp, not text")
        if t[1] == "abs":
            return np.abs(data.astype(float)), miss
        micros = data.astype(np.int64)
        if t[1] == "hour":
            return ((micros // 3_600_000_000) % 24).astype(float), miss
        return ((micros // 86_400_000_000 + 3) % 7).astype(float), miss  # 1970-01-01: Thursday
    if kind == "neg":
        data, miss = _eval(t[1], resolve, n)
        return -_numbers(data), miss
    if kind == "arith":
        (a, ma), (b, mb) = _eval(t[2], resolve, n), _eval(t[3], resolve, n)
        a, b = _numbers(a), _numbers(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[t[1]](a, b)
        miss = _or_masks(ma, mb)
        if t[1] == "/":
            miss = _or_masks(miss, ~np.isfinite(out))
        return out, miss
    if kind == "cmp":
        op = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}[t[1]]
        if t[3][0] == "str" or t[2][0] == "str":  # text against a literal: no column of it
            column, lit = (t[2], t[3][1]) if t[3][0] == "str" else (t[3], t[2][1])
            if t[2][0] == "str":
                op = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}.get(op, op)
            a, ma = _eval(column, resolve, n)
            if not isinstance(a, pd.Series):
                raise ExpressionError("a comparison of text with a number")
            return getattr(a, op)(lit).to_numpy(dtype=bool, na_value=False), ma
        (a, ma), (b, mb) = _eval(t[2], resolve, n), _eval(t[3], resolve, n)
        if isinstance(a, pd.Series) or isinstance(b, pd.Series):
            if not (isinstance(a, pd.Series) and isinstance(b, pd.Series)):
                raise ExpressionError("a comparison of text with a number")
            out = getattr(a, op)(b).to_numpy(dtype=bool, na_value=False)
        else:
            out = getattr(np, {"lt": "less", "le": "less_equal", "gt": "greater",
                               "ge": "greater_equal", "eq": "equal", "ne": "not_equal"}[op])(
                _numbers(a), _numbers(b))
        return out, _or_masks(ma, mb)
    if kind == "in":
        data, miss = _eval(t[1], resolve, n)
        if isinstance(data, pd.Series):
            out = data.isin([v for v in t[2] if isinstance(v, str)]).to_numpy(dtype=bool)
        else:
            out = np.isin(_numbers(data), [float(v) for v in t[2] if not isinstance(v, str)])
        return (~out if t[3] else out), miss
    if kind == "missing":
        _, miss = _eval(t[1], resolve, n)
        miss = np.zeros(n, bool) if miss is None else miss
        return (~miss if t[2] else miss.copy()), None
    if kind == "not":
        data, miss = _eval(t[1], resolve, n)
        return ~_truth(data), miss
    a, ma = _eval(t[1], resolve, n)
    b, mb = _eval(t[2], resolve, n)
    a, b = _truth(a), _truth(b)
    ma = np.zeros(n, bool) if ma is None else ma
    mb = np.zeros(n, bool) if mb is None else mb
    if kind == "and":  # false wins over missing
        false = (~a & ~ma) | (~b & ~mb)
        return a & b, (ma | mb) & ~false
    true = (a & ~ma) | (b & ~mb)  # "or": true wins over missing
    return a | b, (ma | mb) & ~true


def _numbers(data):
    if isinstance(data, pd.Series):
        raise ExpressionError("arithmetic on text")
    return data.astype(float)


def _truth(data):
    if isinstance(data, pd.Series):
        raise ExpressionError("text used as true/false")
    return data.astype(bool) if data.dtype == bool else data.astype(float) != 0


# -- over one row ----------------------------------------------------------------------


def evaluate_row(tree: tuple, row: Mapping[str, object]):
    """Evaluate an expression on one row: a number, a string, True/False, or None when
    missing. ``row`` maps names to Python values (None or NaN for missing; timestamps
    as ``pandas.Timestamp``)."""
    return row_function(tree)(row)


@functools.lru_cache(maxsize=1024)
def row_function(tree: tuple):
    """The expression ``tree`` as a function of one row (see :func:`evaluate_row`).

    The tree is read once into nested closures, so that evaluating it on a row does no
    dispatch on node kinds: the incremental executor evaluates its filters and
    expressions on every event."""
    kind = tree[0]
    if kind in ("num", "str", "bool"):
        const = tree[1]
        return lambda row: const
    if kind == "name":
        name = tree[1]

        def name_(row):
            v = row[name]
            return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT \
                else v
        return name_
    if kind == "call":
        arg, fn = row_function(tree[2]), tree[1]

        def call(row):
            v = arg(row)
            if v is None:
                return None
            if fn == "abs":
                return abs(float(v))
            # A UTC datetime (the incremental executor's) needs no conversion: pandas'
            # costs microseconds per call.
            ts = v if isinstance(v, datetime) and v.tzinfo is UTC else \
                pd.Timestamp(v).tz_convert("UTC")
            return float(ts.hour if fn == "hour" else ts.weekday())
        return call
    if kind == "neg":
        arg = row_function(tree[1])

        def neg(row):
            v = arg(row)
            return None if v is None else -float(v)
        return neg
    if kind in ("arith", "cmp"):
        op, left, right = _OPS[tree[1]], row_function(tree[2]), row_function(tree[3])
        divide, arith = tree[1] == "/", kind == "arith"

        def binary(row):
            a, b = left(row), right(row)
            if a is None or b is None:
                return None
            if arith or not isinstance(a, str):
                a, b = float(a), float(b)
            if divide:
                return a / b if b != 0 else None
            return op(a, b)
        return binary
    if kind == "in":
        arg, values, negated = row_function(tree[1]), tree[2], tree[3]
        numbers = [float(x) for x in values if not isinstance(x, str)]

        def in_(row):
            v = arg(row)
            if v is None:
                return None
            found = v in values if isinstance(v, str) else float(v) in numbers
            return found != negated
        return in_
    if kind == "missing":
        arg, negated = row_function(tree[1]), tree[2]
        return lambda row: (arg(row) is None) != negated
    if kind == "not":
        arg = row_function(tree[1])

        def not_(row):
            v = arg(row)
            return None if v is None else not bool(v)
        return not_
    left, right = row_function(tree[1]), row_function(tree[2])
    # Three-valued logic: "and" is false if a side is false, "or" true if a side is true,
    # otherwise missing if a side is missing.
    wins = kind == "or"

    def logic(row):
        a, b = left(row), right(row)
        a = None if a is None else bool(a)
        b = None if b is None else bool(b)
        if a is wins or b is wins:
            return wins
        return None if a is None or b is None else not wins
    return logic


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
        "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
