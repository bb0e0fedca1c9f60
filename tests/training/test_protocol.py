"""The temporal protocol: windows in time order, labels as known when the model is made."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.training import TrainingConfig, build_protocol


def test_windows_are_ordered_and_disjoint(labeled_dataset):
    cfg = TrainingConfig(n_splits=2, validation_window="14d", gap="7d",
                         calibration_window="14d", test_window="14d")
    p = build_protocol(labeled_dataset, cfg)
    t = p.times
    assert p.refit.meta["ts"].max() < t["calibration_start"] <= p.calibration.meta["ts"].min()
    assert p.calibration.meta["ts"].max() < t["calibration_end"]
    # The gap (label delay) separates calibration from the test window.
    assert t["test_start"] - t["calibration_end"] == pd.Timedelta("7D")
    assert p.test.meta["ts"].min() >= t["test_start"]
    for f in p.folds:
        assert f.train.meta["ts"].max() < f.times["cut"]
        assert f.valid.meta["ts"].min() >= f.times["valid_start"] == f.times["cut"] + pd.Timedelta("7D")
        assert f.valid.meta["ts"].max() < t["calibration_start"]
    ids = [set(w.meta["tx_id"]) for w in (p.refit, p.calibration, p.test)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])


def test_fold_training_labels_are_those_known_at_deployment(labeled_dataset):
    p = build_protocol(labeled_dataset, TrainingConfig(n_splits=2, validation_window="14d", gap="7d"))
    by_id = labeled_dataset.set_index("tx_id")
    for f in p.folds:
        rows = by_id.loc[f.train.meta["tx_id"]]
        late = (rows["is_fraud"] == 1).to_numpy() & (rows["label_reported_at"] > f.times["valid_start"]).to_numpy()
        assert late.any(), "the fixture should have frauds reported after a fold's deployment"
        assert (f.train.y[late] == 0).all()  # not yet known then: trained on as legitimate
        known = (rows["is_fraud"] == 1).to_numpy() & ~late
        assert (f.train.y[known] == 1).all()


def test_test_window_leaves_out_accounts_already_known_compromised(labeled_dataset):
    p = build_protocol(labeled_dataset, TrainingConfig(n_splits=2, validation_window="14d", gap="7d"))
    d = labeled_dataset
    known = set(d.loc[(d["is_fraud"] == 1) & (d["label_reported_at"] < p.times["test_start"]), "account_id"])
    assert known and not (set(p.test.meta["account_id"]) & known)


def test_calibration_leaves_out_accounts_known_compromised_before_it(labeled_dataset):
    """Thresholds are chosen on the population they are applied to: the test window's."""
    p = build_protocol(labeled_dataset, TrainingConfig(n_splits=2, validation_window="14d", gap="7d"))
    d = labeled_dataset[labeled_dataset["is_mature"]]
    start, end = p.times["calibration_start"], p.times["calibration_end"]
    known = set(d.loc[(d["is_fraud"] == 1) & (d["label_reported_at"] < start), "account_id"])
    window = d[(d["ts"] >= start) & (d["ts"] < end)]
    assert known & set(window["account_id"]), "the fixture should have such accounts paying"
    assert sorted(p.calibration.meta["tx_id"]) == sorted(
        window.loc[~window["account_id"].isin(known), "tx_id"])
    # Their rows before the calibration window are still learnt from.
    assert known & set(p.refit.meta["account_id"])


def test_encoding_is_float32_in_catalog_order_with_fixed_category_codes(labeled_dataset):
    p = build_protocol(labeled_dataset, TrainingConfig(n_splits=2, validation_window="14d", gap="7d"))
    feats = p.spec["features"]
    assert p.test.X.dtype == np.float32 and p.test.X.shape[1] == len(feats)
    j = feats.index("channel")
    codes = p.test.X[:, j]
    expected = pd.Categorical(p.test.meta["channel"].astype(object),
                              categories=p.spec["categories"]["channel"]).codes
    np.testing.assert_array_equal(codes, expected.astype(np.float32))


def test_too_short_data_names_the_window_settings(labeled_dataset):
    cfg = TrainingConfig(n_splits=6, validation_window="14d", gap="7d")
    with pytest.raises(ValueError, match="training.test_window|too short"):
        build_protocol(labeled_dataset, cfg)


def test_the_gap_defaults_to_the_label_maturity(labeled_dataset):
    from fraudlab.training import load_config

    assert load_config(None, features={"label_maturity": "14d"}).training.gap == "14d"
    assert load_config(None, features={"label_maturity": "14d"},
                       training={"gap": "3d"}).training.gap == "3d"
    p = build_protocol(labeled_dataset, TrainingConfig(n_splits=1, validation_window="7d",
                                                       calibration_window="7d", test_window="7d"))
    # FeaturesConfig's default maturity (30 days): calibration rows are mature at deployment.
    assert p.times["test_start"] - p.times["calibration_end"] == pd.Timedelta("30D")


def test_the_training_window_bounds_the_folds_and_the_final_fit(labeled_dataset):
    base = dict(n_splits=2, validation_window="7d", gap="7d", calibration_window="7d",
                test_window="7d")
    every = build_protocol(labeled_dataset, TrainingConfig(**base))
    window = build_protocol(labeled_dataset, TrainingConfig(**base, train_window="30d"))
    cal = window.times["calibration_start"]
    assert every.refit.meta["ts"].min() == labeled_dataset["ts"].min()
    fit = window.refit.meta["ts"]
    assert fit.min() >= cal - pd.Timedelta("30D") and fit.max() < cal
    assert fit.min() < cal - pd.Timedelta("29D")  # the whole window is used
    assert window.times["train_start"] == fit.min()
    for f in window.folds:
        span = f.train.meta["ts"]
        assert span.min() >= f.times["cut"] - pd.Timedelta("30D")
    # Calibration and test windows do not depend on how much history the fit takes.
    assert window.calibration.meta["tx_id"].equals(every.calibration.meta["tx_id"])
    assert window.test.meta["tx_id"].equals(every.test.meta["tx_id"])


def test_features_without_information_are_left_out_of_the_inputs(labeled_dataset):
    """A constant and an all-missing feature are left out and named with the reason; a
    feature that is constant where present but sometimes missing stays."""
    from fraudlab.training import ProtocolError

    ds = labeled_dataset.copy()
    ds["kyc_level"] = np.float32(2.0)
    ds["account_age_days"] = np.float32(np.nan)
    gappy = np.where(np.arange(len(ds)) % 3 == 0, np.nan, 1.0).astype(np.float32)
    ds["is_night"] = gappy
    cfg = TrainingConfig(n_splits=2, validation_window="14d", gap="7d",
                         calibration_window="14d", test_window="14d")
    full = build_protocol(labeled_dataset, cfg)
    p = build_protocol(ds, cfg)
    assert p.spec["left_out"] == {"kyc_level": "constant (2)", "account_age_days": "all missing"}
    assert p.spec["features"] == [f for f in full.spec["features"]
                                  if f not in ("kyc_level", "account_age_days")]
    assert p.refit.X.shape[1] == len(full.spec["features"]) - 2
    assert "left_out" not in full.spec or not ({"kyc_level", "account_age_days"}
                                                & set(full.spec["left_out"]))

    flat = ds.copy()
    for f in full.spec["features"]:
        flat[f] = np.nan if flat[f].dtype.kind == "f" else flat[f].iloc[0]
    with pytest.raises(ProtocolError, match="constant or all missing"):
        build_protocol(flat, cfg)
