"""Feature declarations: the YAML file and the Python object are one thing, bad
declarations are refused by name, and declared features equal a naive reference."""

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.features import (
    BUILTIN,
    CATALOG,
    DeclarationError,
    Feature,
    FeaturesConfig,
    SourcesConfig,
    build_dataset,
    compute_features,
    dump_features,
    features_from_dict,
    load_features,
    load_raw,
    resolve_features,
    split_features,
)
from fraudlab.features._expr import ExpressionError, evaluate, evaluate_row, parse

from .test_engine import _assert_equal_to_reference, _world_with_ties, reference_features

USER_FILE = """
columns:
  transactions:
    merchant_category: {kind: category, categories: [grocery, travel, gaming]}
features:
  - name: amount_sum_3d
    description: total amount paid by this account in the last 3 days, this one included
    entity: account
    agg: sum
    of: amount
    window: 3d
    include_current: true
    unit: currency
  - name: category_tx_count_24h
    description: transactions by this account in this merchant category in the last 24 hours
    entity: account+merchant_category
    agg: count
    window: 24h
    nullable: true
  - name: merchant_category
    description: merchant category of this payment
    agg: value
    of: merchant_category
    kind: category
    categories: [grocery, travel, gaming]
    nullable: true
  - name: failed_web_logins_1h
    description: failed logins on a device this account used, in the last hour
    entity: account
    source: events
    agg: count
    window: 1h
    where: "event_type == 'login_failed' and not is_rooted"
  - name: amount_min_90s
    description: smallest amount of this account in the last 90 seconds, this one included
    entity: account
    agg: min
    of: amount
    window: 90s
    include_current: true
    nullable: true
  - name: amount_std_7d
    description: spread of this account's amounts over 7 days
    entity: account
    agg: std
    of: amount
    window: 7d
    nullable: true
  - name: account_fraud_reports_30d
    description: fraud reports about this account's payments received in the last 30 days
    entity: account
    source: labels
    agg: fraud_reports
    window: 30d
    nullable: true
  - name: big_gaming_payment
    description: 1 for a gaming payment above the high-amount limit
    agg: expr
    expr: "merchant_category == 'gaming' and amount > high_amount"
    nullable: true
    max_value: 1
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "features.yaml"
    path.write_text(USER_FILE)
    return path


def _with_category(tables, seed=0):
    """The world's transactions with a merchant category of their own."""
    tx = tables["transactions"].copy()
    rng = np.random.default_rng(seed)
    cats = np.array(["grocery", "travel", "gaming"])[rng.integers(0, 3, len(tx))]
    tx["merchant_category"] = pd.Series(cats, dtype="str").where(rng.random(len(tx)) > 0.1)
    return {**tables, "transactions": tx}


def test_the_builtin_set_is_a_features_file_that_round_trips(tmp_path):
    text = dump_features(BUILTIN, tmp_path / "builtin.yaml")
    assert load_features(tmp_path / "builtin.yaml") == BUILTIN
    assert features_from_dict(yaml.safe_load(text)).features == CATALOG
    assert len(CATALOG) == 76


def test_a_user_file_round_trips_and_loads_the_same_as_python(user_file, tmp_path):
    fs = load_features(user_file, settings=["high_amount"])
    assert fs.names()[:2] == ["amount_sum_3d", "category_tx_count_24h"]
    assert fs.columns["transactions"]["merchant_category"].categories == ("grocery", "travel",
                                                                          "gaming")
    dump_features(fs, tmp_path / "again.yaml")
    assert load_features(tmp_path / "again.yaml", settings=["high_amount"]) == fs
    by_hand = Feature(name="amount_sum_3d", description=fs.features[0].description,
                      entity="account", agg="sum", of="amount", window="3d",
                      include_current=True, unit="currency")
    assert fs.features[0] == by_hand


def test_declared_features_over_extra_columns_equal_the_reference(user_file):
    tables = _with_category(_world_with_ties(3))
    cfg = FeaturesConfig(params={"high_amount": 300.0})
    fs = load_features(user_file, settings=["high_amount"])
    fast = compute_features(tables, config=cfg, catalog=fs)
    slow = reference_features(tables, cfg, fs.features)
    _assert_equal_to_reference(fast, slow, atol=1e-6)
    # The hand check of one row: a composite count is per (account, category).
    tx = tables["transactions"]
    i = int(np.flatnonzero(tx["merchant_category"].notna().to_numpy())[-1])
    t, acct, cat = tx.loc[i, "ts"], tx.loc[i, "account_id"], tx.loc[i, "merchant_category"]
    before = tx[(tx["account_id"] == acct) & (tx["merchant_category"] == cat)
                & (tx["ts"] < t) & (tx["ts"] > t - pd.Timedelta("24h"))]
    assert fast.loc[i, "category_tx_count_24h"] == len(before)
    assert fast["account_fraud_reports_30d"].max() > 0
    assert fast["big_gaming_payment"].sum() > 0


def test_the_configured_set_is_built_kept_through_loading_and_carried(user_file, tmp_path):
    tables = _with_category(simulate_world(SimulationConfig(accounts=150, days=40, seed=2, history_days=2)).tables())
    tables["transactions"]["undeclared_note"] = "x"
    # The user's file calls the category "mcc": the column map names it, as for any column.
    tables["transactions"] = tables["transactions"].rename(columns={"merchant_category": "mcc"})
    cfg = FeaturesConfig(definitions=[str(user_file)], params={"high_amount": 300.0},
                         exclude=["blacklist", "amount_zscore"])
    fs = resolve_features(cfg)
    sources = SourcesConfig(column_map={"transactions": {"merchant_category": "mcc"}})
    raw = load_raw(tables, sources, columns=fs.columns)
    assert raw.tables["transactions"].dropped == ("undeclared_note",)
    assert "merchant_category" in raw.tables["transactions"].frame.columns
    ds = build_dataset(raw, tables["transactions"]["ts"].max() + pd.Timedelta("60D"), config=cfg)
    assert "merchant_category" in ds.columns and "blacklist_device_hit" not in ds.columns
    assert "amount_zscore" not in ds.columns
    assert ds.attrs["features"]["settings"]["params"] == {"high_amount": 300.0}
    path = tmp_path / "ds.parquet"
    ds.to_parquet(path)
    back = pd.read_parquet(path)
    X, _, _ = split_features(back)  # the dataset's own features, not the built-in constant
    assert list(X.columns) == fs.names() == [c for c in ds.columns if c in fs.names()]


def test_extra_columns_are_checked_by_the_contract(user_file):
    from fraudlab.data_contracts import validate_raw

    tables = _with_category(simulate_world(SimulationConfig(accounts=60, days=20, seed=1, history_days=2)).tables())
    tx = tables["transactions"]
    tx.loc[[3, 7], "merchant_category"] = "casino"
    fs = load_features(user_file, settings=["high_amount"])
    raw = load_raw(tables, columns=fs.columns)
    report = validate_raw({"transactions": raw.tables["transactions"]}, as_of=tx["ts"].max() + pd.Timedelta("1s"))
    [bad] = report.failures
    assert bad.column == "merchant_category" and bad.failing_count == 2
    assert sorted(report.quarantine["row"].tolist()) == [3, 7]


def test_include_and_exclude_by_name_and_group():
    fs = resolve_features(FeaturesConfig(include=["velocity", "kyc_level"]))
    assert {f.group for f in fs.features} == {"velocity", "account"}
    assert "kyc_level" in fs.names() and "account_age_days" not in fs.names()
    with pytest.raises(DeclarationError, match="large_amount_far_from_home.*distance_from_home"):
        resolve_features(FeaturesConfig(exclude=["distance_from_home_km"]))
    with pytest.raises(DeclarationError, match="features.include.*'velocty'"):
        resolve_features(FeaturesConfig(include=["velocty"]))


def _one(**fields):
    base = {"name": "f", "description": "a feature", "entity": "account", "agg": "count",
            "window": "1h"}
    return {"features": [{**base, **fields}]}


BAD = [
    ("unknown table", _one(source="payments"), "source", "unknown table 'payments'"),
    ("unknown column", _one(agg="sum", of="amout"), "of", "numeric column"),
    ("unknown entity column", _one(entity="account+card_country"), "entity",
     "no column 'card_country'"),
    ("unknown aggregation", _one(agg="average"), "agg", "unknown aggregation 'average'"),
    ("bad window", _one(window="3 parsecs"), "window", "not a duration"),
    ("zero window", _one(window="0s"), "window", "longer than zero"),
    ("filter that does not parse", _one(where="amount >"), "where", "does not parse"),
    ("filter over an unknown name", _one(where="amount > tiny"), "where", "unknown name 'tiny'"),
    ("category without categories", {"features": [{"name": "f", "description": "d",
                                                   "agg": "value", "of": "channel",
                                                   "kind": "category"}]},
     "categories", "needs its categories"),
    ("reads is_fraud", _one(source="labels", agg="sum", of="is_fraud"), "of", "label"),
    ("filters on fraud_type", _one(source="labels", agg="count", where="fraud_type == 'x'"),
     "where", "label"),
    ("a value of the label", {"features": [{"name": "f", "description": "d", "agg": "value",
                                            "source": "labels", "of": "reported_at"}]},
     "of", "label"),
    ("unknown field", _one(windows="1h"), "windows", "did you mean 'window'"),
    ("time unit", _one(agg="since_last", window=None, unit="weeks"), "unit", "time unit"),
    ("history in a window", _one(agg="first_use"), "window", "whole history"),
    ("include_current on events", _one(source="events", include_current=True),
     "include_current", "only a transactions feature"),
]


@pytest.mark.parametrize(("case", "doc", "field", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_declarations_name_the_file_feature_and_field(case, doc, field, message):
    with pytest.raises(DeclarationError) as err:
        features_from_dict(doc, origin="mine.yaml")
    assert err.value.origin == "mine.yaml" and err.value.feature == "f"
    assert err.value.field == field
    assert message in str(err.value) and str(err.value).startswith("mine.yaml, feature 'f'")


def test_a_name_declared_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump({"features": [
        {"name": "amount", "description": "again", "agg": "value", "of": "amount"}]}))
    with pytest.raises(DeclarationError, match="'amount'.*declared twice"):
        resolve_features(FeaturesConfig(definitions=[str(path)]))


def test_a_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("features: [\n")
    with pytest.raises(DeclarationError, match="broken.yaml: not valid YAML"):
        load_features(path)


# --------------------------------------------------------------------------- expressions


def test_expressions_follow_three_valued_logic_and_never_eval():
    tree = parse("a > 1 and (b == 'x' or c is missing) and not d in (1, 2)")
    row = {"a": 2.0, "b": "y", "c": None, "d": 3.0}
    assert evaluate_row(tree, row) is True
    assert evaluate_row(parse("a > 1 and c > 0"), row) is None
    assert evaluate_row(parse("a < 1 and c > 0"), row) is False
    assert evaluate_row(parse("a > 1 or c > 0"), row) is True
    for bad in ("__import__('os')", "a.b", "a; b", "a > ", "lambda: 1", "[1]", "f(1)"):
        with pytest.raises(ExpressionError):
            parse(bad)


_ATOMS = st.sampled_from(["x", "y", "s", "1", "2.5", "'a'", "small_amount"])


@st.composite
def _expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        left, right = draw(st.sampled_from(["x", "y"])), draw(st.sampled_from(["x", "y", "1", "-2"]))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            return f"{left} {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {right}"
        if kind == 1:
            return f"s {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(['a', 'b']))!r}"
        if kind == 2:
            return f"{left} is {draw(st.sampled_from(['', 'not ']))}missing"
        if kind == 3:
            return f"s {draw(st.sampled_from(['', 'not ']))}in ('a', 'c')"
        return f"({left} + {right}) * 2 > small_amount"
    op = draw(st.sampled_from(["and", "or"]))
    a, b = draw(_expressions(depth=depth - 1)), draw(_expressions(depth=depth - 1))
    return f"{'not ' if draw(st.booleans()) else ''}({a}) {op} ({b})"


@settings(max_examples=150, deadline=None)
@given(text=_expressions(),
       rows=st.lists(st.tuples(st.one_of(st.none(), st.floats(-3, 3).map(round)),
                               st.one_of(st.none(), st.sampled_from([-2.0, 0.0, 1.0, 2.5])),
                               st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))),
                     min_size=1, max_size=12))
def test_whole_columns_and_one_row_at_a_time_agree(text, rows):
    """The batch evaluation (numpy masks) and the row evaluation (Python) of any
    expression agree on every row, missing values included."""
    frame = pd.DataFrame(rows, columns=["x", "y", "s"]).astype({"x": float, "y": float, "s": "str"})
    tree = parse(text)
    resolve = {"small_amount": 1.5}.get
    values, missing = evaluate(tree, lambda n: frame[n] if n in frame else resolve(n), len(frame))
    for i, r in enumerate(rows):
        expected = evaluate_row(tree, {"x": r[0], "y": r[1], "s": r[2], "small_amount": 1.5})
        if expected is None:
            assert missing[i], (text, r)
        else:
            assert not missing[i] and values[i] == float(expected), (text, r)


# --------------------------------------------------------------------------- random declarations


@st.composite
def _declarations(draw):
    """A random window, history or label-aware declaration over the world's columns."""
    kind = draw(st.sampled_from(["window", "history", "labels"]))
    source = "transactions" if kind != "history" else draw(st.sampled_from(["transactions", "events"]))
    if kind == "labels":
        source = "labels"
    entities = (["account", "device", "merchant", "counterparty", "ip", "account+channel",
                 "account+merchant_category", "merchant_category", "device+channel", "region"]
                if source != "events" else ["account", "device", "account+device", "region"])
    entity = draw(st.sampled_from(entities))
    window = draw(st.sampled_from([None, "90s", "7min", "1h", "26h", "3d"]))
    fields = {"name": "f", "description": "random", "entity": entity, "source": source,
              "window": window, "nullable": True, "min_value": None}
    if kind == "labels":
        fields["agg"] = draw(st.sampled_from(["fraud_reports", "fraud_rate"]))
        return fields
    if kind == "history":
        fields["agg"] = draw(st.sampled_from(["since_last", "since_first", "first_use",
                                              "seen_before", "last_distance"]))
        if fields["agg"].startswith("since_"):
            fields["unit"] = draw(st.sampled_from(["seconds", "hours"]))
        fields["window"] = None
        if source == "events":
            fields["where"] = draw(st.sampled_from([None, "event_type == 'login'",
                                                    "event_type in ('login', 'login_failed')"]))
        return fields
    fields["agg"] = draw(st.sampled_from(["count", "sum", "mean", "min", "max", "std",
                                          "nunique"]))
    if fields["agg"] == "nunique":
        fields["of"] = draw(st.sampled_from(["merchant_id", "channel", "merchant_category"]))
    elif fields["agg"] != "count":
        fields["of"] = "amount"
    fields["include_current"] = draw(st.booleans())
    fields["where"] = draw(st.sampled_from([None, "amount < small_amount", "amount >= 50",
                                            "channel == 'web' or amount > 200",
                                            "not merchant_category is missing"]))
    return fields


_COLUMNS = {"transactions": {"merchant_category": {"kind": "category",
                                                   "categories": ["grocery", "travel", "gaming"]}}}


@pytest.fixture(scope="module")
def random_world():
    return _with_category(_world_with_ties(11), seed=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decls=st.lists(_declarations(), min_size=1, max_size=3), frac=st.floats(0.2, 0.9))
def test_random_declarations_equal_the_reference_and_ignore_the_future(random_world, decls, frac):
    """Declarations nobody wrote by hand, over a world with ties: the engine equals the
    naive reference, and changing everything from a cut on moves nothing before it."""
    from .test_engine import _perturb_future

    doc = {"columns": _COLUMNS,
           "features": [{**d, "name": f"f{i}"} for i, d in enumerate(decls)]}
    fs = features_from_dict(doc)
    cfg = FeaturesConfig()
    tables = random_world
    fast = compute_features(tables, config=cfg, catalog=fs)
    slow = reference_features(tables, cfg, fs.features)
    _assert_equal_to_reference(fast, slow, atol=1e-6)
    tx = tables["transactions"]
    cut = tx["ts"].quantile(frac).floor("min")
    past = np.flatnonzero((tx["ts"] < cut).to_numpy())
    if len(past):
        for mode in ("remove", "change"):
            before = compute_features(tables, rows=past, config=cfg, catalog=fs)
            after = compute_features(_perturb_future(tables, cut, mode), rows=past, config=cfg,
                                     catalog=fs)
            pd.testing.assert_frame_equal(before, after)


def test_feature_set_from_python_is_checked():
    with pytest.raises(DeclarationError, match="field 'of'"):
        compute_features({"transactions": pd.DataFrame()}, catalog=(
            Feature(name="g", description="d", entity="account", agg="sum", of="nope"),))
