import numpy as np
import pandas as pd
import pytest

from fraudlab.evaluation import TemporalSplit, labels_known_at, temporal_holdout

DAY = pd.Timedelta("1D")
T0 = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def dataset():
    """One transaction per account per day for 60 days; account a3 is defrauded on day 40
    and the fraud is reported on day 45."""
    rows = []
    for d in range(60):
        for a in range(4):
            rows.append({"tx_id": f"{d}-{a}", "ts": T0 + d * DAY + pd.Timedelta(hours=a),
                         "account_id": f"a{a}", "is_fraud": 0, "label_reported_at": pd.NaT})
    f = pd.DataFrame(rows)
    f["label_reported_at"] = pd.Series(pd.NaT, index=f.index, dtype="datetime64[us, UTC]")
    hit = f["tx_id"] == "40-3"
    f.loc[hit, "is_fraud"] = 1
    f.loc[hit, "label_reported_at"] = T0 + 45 * DAY
    return f


def test_folds_step_back_with_the_gap(dataset):
    s = TemporalSplit(n_splits=3, validation_window="7d", gap="10d", end=T0 + 60 * DAY,
                      exclude_known_fraud_accounts=False)
    assert s.get_n_splits() == 3
    folds = list(s.split(dataset))
    times = s.fold_times(dataset)
    assert [t["valid_start"] for t in times] == [T0 + 53 * DAY, T0 + 46 * DAY, T0 + 39 * DAY]
    for (train, valid), t in zip(folds, times, strict=True):
        ts = dataset["ts"]
        assert ts.iloc[train].max() < t["valid_start"] - pd.Timedelta("10D")
        assert ts.iloc[valid].min() >= t["valid_start"] and ts.iloc[valid].max() < t["valid_end"]
        assert len(valid) == 7 * 4
        assert not set(train) & set(valid)
    # Expanding window: every fold trains on all history before its cut.
    assert len(folds[0][0]) == 43 * 4 and len(folds[2][0]) == 29 * 4


def test_sliding_training_window(dataset):
    s = TemporalSplit(n_splits=2, validation_window="7d", gap="7d", train_window="14d",
                      end=T0 + 60 * DAY, exclude_known_fraud_accounts=False)
    for train, _ in s.split(dataset):
        assert len(train) == 14 * 4


def test_known_compromised_accounts_leave_the_validation_window(dataset):
    # Fold 0 validates days 53-60; a3's fraud was reported on day 45, so a3 is known.
    s = TemporalSplit(n_splits=3, validation_window="7d", gap="7d", end=T0 + 60 * DAY)
    folds = list(s.split(dataset))
    valid0 = dataset.iloc[folds[0][1]]
    assert "a3" not in set(valid0["account_id"]) and len(valid0) == 7 * 3
    # Fold 2 validates days 39-46: the report came after it started, a3 stays.
    valid2 = dataset.iloc[folds[2][1]]
    assert "a3" in set(valid2["account_id"])


def test_labels_as_known_when_the_fold_was_trained(dataset):
    assert labels_known_at(dataset, T0 + 44 * DAY).sum() == 0
    assert labels_known_at(dataset, T0 + 45 * DAY).sum() == 1


def test_holdout_is_the_newest_window_after_a_gap(dataset):
    dev, test = temporal_holdout(dataset, test_window="10d", gap="5d",
                                 exclude_known_fraud_accounts=False)
    ts = dataset["ts"]
    assert ts.iloc[test].min() >= ts.max() - pd.Timedelta("10D")
    assert ts.iloc[dev].max() < ts.iloc[test].min() - pd.Timedelta("5D")
    assert len(dev) + len(test) < len(dataset)


def test_too_many_folds_is_a_clear_error(dataset):
    s = TemporalSplit(n_splits=20, validation_window="7d", gap="7d")
    with pytest.raises(ValueError, match="too short"):
        list(s.split(dataset))


def test_it_needs_the_metadata(dataset):
    with pytest.raises(ValueError, match="no 'ts' column"):
        list(TemporalSplit().split(dataset.drop(columns="ts")))


def test_works_with_sklearn_model_selection(dataset):
    from sklearn.model_selection import check_cv

    s = TemporalSplit(n_splits=2, validation_window="7d", gap="7d")
    assert check_cv(s) is s
    assert np.all([len(v) > 0 for _, v in s.split(dataset)])
