import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudlab.features._factorize import factorize_strings

# Lengths 0 to 40 around the 8-byte word edge, nulls, a NUL byte, multi-byte UTF-8.
VALUES = ["", "a", "é", "abcdefg", "abcdefgh", "abcdefgi", "abcdefghi", "abcdefgh\x00",
          "a\x00", "a\x00\x00", "A0000001", "A0000002", "192.168.100.200", "192.168.100.201",
          "x" * 40, "x" * 39 + "y", None]


def _reference(series):
    codes, uniques = pd.factorize(pd.concat(series, ignore_index=True), use_na_sentinel=True)
    return codes, len(uniques)


def _columns(seed):
    rng = np.random.default_rng(seed)
    pick = np.array(VALUES, dtype=object)
    a = pd.Series(rng.choice(pick, 600), dtype="str")
    b = pd.Series(rng.choice(pick, 300), dtype="str").iloc[50:250]  # a slice: Arrow offset
    c = pd.concat([a.iloc[7:200], a.iloc[400:]])  # two Arrow chunks
    return [a, b, c]


def _spy_on_pandas(monkeypatch):
    calls = []
    real = pd.factorize

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "factorize", spy)
    return calls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_codes_equal_pandas_factorize_without_falling_back(seed, monkeypatch):
    cols = _columns(seed)
    expected = _reference(cols)
    calls = _spy_on_pandas(monkeypatch)
    codes, n = factorize_strings(cols)
    assert not calls, "Arrow strings took the pandas path"
    np.testing.assert_array_equal(codes, expected[0])
    assert n == expected[1]
    assert codes.dtype == np.int64


@pytest.mark.parametrize("bits", [0, 0b1, 0b11])
def test_hash_collisions_are_caught_and_computed_by_pandas(bits, monkeypatch):
    cols = _columns(5)
    expected = _reference(cols)
    calls = _spy_on_pandas(monkeypatch)
    codes, n = factorize_strings(cols, _keep=bits)  # at most 4 hashes for 16 strings
    assert calls, "colliding hashes were not detected"
    np.testing.assert_array_equal(codes, expected[0])
    assert n == expected[1]


def test_columns_that_are_not_arrow_strings_go_to_pandas():
    obj = pd.Series(np.array(["b", None, "a", "b"], dtype=object), dtype=object)
    ints = pd.Series([3, 1, 3, 2])
    for cols in ([obj], [ints], [pd.Series(["b", "a"], dtype="str"), obj]):
        codes, n = factorize_strings(cols)
        expected = _reference(cols)
        np.testing.assert_array_equal(codes, expected[0])
        assert n == expected[1]


def test_empty_and_all_null_columns():
    empty = pd.Series([], dtype="str")
    nulls = pd.Series([None, None], dtype="str")
    codes, n = factorize_strings([empty, nulls, empty])
    np.testing.assert_array_equal(codes, [-1, -1])
    assert n == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab\x00é", max_size=20)), max_size=60),
       st.sampled_from([-1, 0b11, 0xFFFF]))
def test_any_strings_match_pandas(values, bits):
    cols = [pd.Series(values, dtype="str"), pd.Series(values[::-1], dtype="str")]
    codes, n = factorize_strings(cols, _keep=bits)
    expected = _reference(cols)
    np.testing.assert_array_equal(codes, expected[0])
    assert n == expected[1]
