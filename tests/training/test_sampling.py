"""Training on sampled legitimate rows (training.negative_rate): all frauds kept, the
sampled rows weighted, the windows that judge a model whole, and the same protocol whether
the dataset is sampled in memory or read sampled part by part."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudlab.training import (
    TrainingConfig,
    build_protocol,
    read_for_training,
    rebalance,
    rebalance_weighted,
    sample_negatives,
)

CFG = dict(n_splits=2, validation_window="14d", gap="7d", calibration_window="14d",
           test_window="14d")


def _frame(n: int, fraud_every: int = 10) -> pd.DataFrame:
    ts = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"tx_id": [f"t{i}" for i in range(n)], "ts": ts,
                         "is_fraud": (np.arange(n) % fraud_every == 0).astype(np.int8)})


def test_every_fraud_is_kept_and_legitimate_rows_weigh_one_over_the_rate():
    d = _frame(20_000)
    out = sample_negatives(d, 0.25, seed=1)
    assert len(out) == len(d)  # without keep_from no row is dropped
    fraud = out["is_fraud"] == 1
    assert (out.loc[fraud, "sample_weight"] == 1).all()
    w = out.loc[~fraud, "sample_weight"]
    assert set(np.unique(w)) == {0.0, 4.0}
    share = (w > 0).mean()
    assert 0.23 < share < 0.27, share  # 18,000 draws: 3 standard deviations is 0.01
    assert out.attrs["negative_rate"] == 0.25
    assert "sample_weight" not in d.columns  # the input is not changed


def test_old_rows_out_of_the_sample_are_dropped_and_recent_ones_kept():
    d = _frame(2_000)
    cut = d["ts"].iloc[1_500]
    out = sample_negatives(d, 0.1, seed=3, keep_from=cut)
    old, new = out[out["ts"] < cut], out[out["ts"] >= cut]
    assert len(new) == 500 and (old["sample_weight"] > 0).all()
    assert set(old["tx_id"]) == set(
        sample_negatives(d, 0.1, seed=3).query("sample_weight > 0 and ts < @cut")["tx_id"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 399), min_size=1, max_size=5, unique=True),
       st.floats(0.05, 1.0), st.integers(0, 10**6))
def test_a_rows_fate_does_not_depend_on_how_the_dataset_is_read(cuts, rate, seed):
    """Sampling parts one at a time, in any order, keeps the rows sampling the whole keeps."""
    d = _frame(400, fraud_every=7)
    edges = [0, *sorted(cuts), 400]
    parts = [d.iloc[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]
    whole = sample_negatives(d, rate, seed=seed).set_index("tx_id")["sample_weight"]
    pieces = pd.concat([sample_negatives(p, rate, seed=seed) for p in parts[::-1]])
    pd.testing.assert_series_equal(pieces.set_index("tx_id")["sample_weight"].sort_index(),
                                   whole.sort_index())


def test_a_rate_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="negative_rate must be in"):
        sample_negatives(_frame(10), 0.0)
    with pytest.raises(ValueError):
        TrainingConfig(negative_rate=1.5)


# ---------------------------------------------------------------- rebalancing with weights


def _xy(n_neg=900, n_pos=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_neg + n_pos, 3)).astype(np.float32)
    y = np.r_[np.zeros(n_neg, np.int8), np.ones(n_pos, np.int8)]
    return X, y


@pytest.mark.parametrize("strategy,kw", [("none", {}), ("scale_pos_weight", {}),
                                         ("undersample", {"ratio": 0.2}),
                                         ("smote", {"ratio": 0.1}),
                                         ("over_under", {"ratio": 0.1, "under_ratio": 0.3})])
def test_unweighted_rows_are_resampled_as_imbalanced_learn_does(strategy, kw):
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    X, y = _xy()
    Xw, yw, w, spw = rebalance_weighted(X, y, None, strategy, random_state=4, **kw)
    Xr, yr, spr = rebalance(X, y, strategy, random_state=4, **kw)
    assert w is None and spw == spr
    np.testing.assert_array_equal(Xw, Xr)
    np.testing.assert_array_equal(yw, yr)
    if strategy == "undersample":
        Xi, yi = RandomUnderSampler(sampling_strategy=0.2, random_state=4).fit_resample(X, y)
        np.testing.assert_array_equal(Xr, Xi)
    if strategy == "over_under":
        Xi, yi = RandomOverSampler(sampling_strategy=0.1, random_state=4).fit_resample(X, y)
        Xi, yi = RandomUnderSampler(sampling_strategy=0.3, random_state=4).fit_resample(Xi, yi)
        np.testing.assert_array_equal(Xr, Xi)
    if strategy == "scale_pos_weight":
        assert spr == 900 / 30


@pytest.mark.parametrize("strategy,kw,ratio", [("undersample", {"ratio": 0.2}, 0.2),
                                               ("smote", {"ratio": 0.1}, 0.1),
                                               ("over_under", {"ratio": 0.1, "under_ratio": 0.3}, 0.3)])
def test_weighted_rows_reach_the_ratio_in_weight(strategy, kw, ratio):
    """225 legitimate rows weighing 4 stand for 900: the targets are those of the 900."""
    X, y = _xy(n_neg=225)
    w = np.where(y == 1, 1.0, 4.0).astype(np.float32)
    Xr, yr, wr, spw = rebalance_weighted(X, y, w, strategy, random_state=0, **kw)
    assert len(wr) == len(yr) == len(Xr) and spw == 1.0
    got = wr[yr == 1].sum() / wr[yr == 0].sum()
    assert abs(got - ratio) < 0.02, got
    assert set(np.unique(wr[yr == 0])) == {4.0}  # a kept row keeps its weight


def test_scale_pos_weight_of_weighted_rows_is_the_weighted_ratio():
    X, y = _xy(n_neg=225)
    w = np.where(y == 1, 1.0, 4.0)
    assert rebalance_weighted(X, y, w, "scale_pos_weight")[3] == 900 / 30


# ---------------------------------------------------------------- the protocol and the reader


@pytest.fixture(scope="module")
def sampled_protocols(labeled_dataset):
    cfg = TrainingConfig(**CFG)
    return (build_protocol(labeled_dataset, cfg),
            build_protocol(labeled_dataset, TrainingConfig(**CFG, negative_rate=0.2)))


def test_judging_windows_keep_every_row_and_training_windows_the_sample(sampled_protocols):
    whole, sampled = sampled_protocols
    for name in ("calibration", "test"):
        a, b = getattr(whole, name), getattr(sampled, name)
        assert a.w is None and b.w is None
        np.testing.assert_array_equal(a.meta["tx_id"], b.meta["tx_id"])
        np.testing.assert_array_equal(a.X, b.X)
    for fa, fb in zip(whole.folds, sampled.folds, strict=True):
        np.testing.assert_array_equal(fa.valid.meta["tx_id"], fb.valid.meta["tx_id"])
    for a, b in [(whole.refit, sampled.refit), *((f.train, g.train) for f, g in
                                                 zip(whole.folds, sampled.folds, strict=True))]:
        assert a.frauds == b.frauds  # every fraud known at the time is trained on
        legit_a, legit_b = (a.y == 0).sum(), (b.y == 0).sum()
        assert 0.17 < legit_b / legit_a < 0.23, legit_b / legit_a
        # The sample stands for the whole window: its weight is within a few percent.
        assert abs(b.w.sum() / len(a) - 1) < 0.05
        assert set(b.meta["tx_id"]) <= set(a.meta["tx_id"])
    assert "rows_represented" in sampled.summary()["refit"]


def test_validation_windows_mark_their_sample_for_early_stopping(sampled_protocols,
                                                                 labeled_dataset):
    whole, sampled = sampled_protocols
    # The same rule as the training windows': tx_id and seed decide, every fraud is in
    # (also one whose report comes after the fold, a legitimate row for the fold).
    ref = sample_negatives(labeled_dataset, 0.2, seed=42).set_index("tx_id")["sample_weight"]
    for fa, fb in zip(whole.folds, sampled.folds, strict=True):
        assert fa.valid.sample is None and fb.valid.w is None
        s, y = fb.valid.sample, fb.valid.y
        assert len(s) == len(fa.valid)  # every row stays, the sample is marked
        assert (s[y == 1] == 1).all()
        assert set(np.unique(s)) == {0.0, 1.0, 5.0}
        np.testing.assert_array_equal(s, ref.loc[fb.valid.meta["tx_id"]].to_numpy())
        assert abs(s.sum() / len(s) - 1) < 0.05  # it stands for the whole window


def test_weighted_average_precision_of_the_sample_estimates_the_whole_window():
    """What early stopping on the sample relies on: XGBoost's aucpr honours weights, so the
    sampled validation rows weighted 1 / rate score a model as all the rows do."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    n = 200_000
    y = (rng.random(n) < 0.01).astype(np.int8)
    X = rng.normal(size=(n, 3)) + y[:, None] * np.array([1.0, 0.5, 0.0])
    booster = xgb.train({"objective": "binary:logistic", "eval_metric": "aucpr",
                         "max_depth": 3, "nthread": 1}, xgb.DMatrix(X[:100_000], y[:100_000]),
                        num_boost_round=20)
    Xv, yv = X[100_000:], y[100_000:]
    w = sample_negatives(pd.DataFrame({"tx_id": [f"v{i}" for i in range(len(yv))],
                                       "is_fraud": yv}), 0.05, seed=7)["sample_weight"].to_numpy()
    kept = w > 0

    def aucpr(dm):
        return float(booster.eval(dm).split(":")[-1])

    whole = aucpr(xgb.DMatrix(Xv, yv))
    weighted = aucpr(xgb.DMatrix(Xv[kept], yv[kept], weight=w[kept]))
    unweighted = aucpr(xgb.DMatrix(Xv[kept], yv[kept]))
    assert kept.sum() < 0.07 * len(yv)
    assert abs(weighted - whole) < 0.03, (weighted, whole)
    assert unweighted - whole > 0.1, (unweighted, whole)  # without weights: far too kind


def _write_parts(dataset: pd.DataFrame, out, block="7D"):
    """``dataset`` as the folder of parts a Dask build writes."""
    out.mkdir()
    parts = []
    for k, (_, g) in enumerate(dataset.groupby(dataset["ts"].dt.floor(block), sort=True)):
        name = f"part-{k:05d}.parquet"
        g.to_parquet(out / name, index=False)
        parts.append({"file": name, "rows": len(g), "start": g["ts"].min().isoformat(),
                      "end": g["ts"].max().isoformat()})
    attrs = {k: v for k, v in dataset.attrs.items() if k != "contract"}
    (out / "_dataset.json").write_text(json.dumps(
        {"attrs": attrs, "parts": parts, "contract": {"success": True}}, default=str))


@pytest.mark.parametrize("train_window", [None, "21d"])
def test_reading_parts_sampled_gives_the_protocol_of_the_whole(labeled_dataset, tmp_path,
                                                              train_window):
    folder = tmp_path / "parts"
    _write_parts(labeled_dataset, folder)
    cfg = TrainingConfig(**CFG, negative_rate=0.2, train_window=train_window)
    read = read_for_training(folder, cfg)
    assert len(read) < 0.8 * len(labeled_dataset)  # old legitimate rows out of the sample
    a, b = build_protocol(labeled_dataset, cfg), build_protocol(read, cfg)
    assert a.times == b.times
    for wa, wb in [(a.refit, b.refit), (a.calibration, b.calibration), (a.test, b.test),
                   *((f.train, g.train) for f, g in zip(a.folds, b.folds, strict=True)),
                   *((f.valid, g.valid) for f, g in zip(a.folds, b.folds, strict=True))]:
        order_a, order_b = np.argsort(wa.meta["tx_id"]), np.argsort(wb.meta["tx_id"])
        np.testing.assert_array_equal(wa.meta["tx_id"].to_numpy()[order_a],
                                      wb.meta["tx_id"].to_numpy()[order_b])
        np.testing.assert_array_equal(wa.X[order_a], wb.X[order_b])
        np.testing.assert_array_equal(wa.y[order_a], wb.y[order_b])
        if wa.w is not None:
            np.testing.assert_array_equal(wa.w[order_a], wb.w[order_b])


def test_a_model_trains_on_a_folder_read_sampled(labeled_dataset, tmp_path, fast_config):
    """The search and the final fit run on weighted rows; the test window is every row."""
    from fraudlab.training import train_model

    folder = tmp_path / "parts"
    _write_parts(labeled_dataset, folder)
    cfg = fast_config.model_copy(update={"training": fast_config.training.model_copy(
        update={"negative_rate": 0.3, "strategies": ["undersample", "scale_pos_weight"]})})
    result = train_model(read_for_training(folder, cfg.training), cfg, log=False)
    whole = build_protocol(labeled_dataset, fast_config.training)
    p = result.protocol
    assert p.refit.w is not None and len(p.refit) < 0.5 * len(whole.refit)
    assert result.model.test_metrics["rows"] == len(whole.test)
    assert result.model.test_metrics["frauds"] == whole.test.frauds
    assert 0 < result.model.test_metrics["average_precision_score"] <= 1


def test_a_refresh_builds_on_dask_and_trains_on_the_sample(tmp_path):
    """refresh.engine: dask: the period's dataset is a folder of parts, read sampled."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import mlflow

    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import PartitionedDataset, write_tables
    from fraudlab.training import load_config, refresh

    world = simulate_world(SimulationConfig(accounts=600, days=110, seed=21, history_days=30))
    write_tables(world.tables(), tmp_path / "raw", world.manifest)
    config = load_config(None, paths={"root": str(tmp_path), "raw": "raw"}, training={
        "n_trials": 2, "n_splits": 2, "validation_window": "14d", "gap": "7d",
        "max_rounds": 40, "early_stopping_rounds": 10, "report_every": 10,
        "negative_rate": 0.3, "train_window": "30d"},
        refresh={"engine": "dask"}, dask={"workers": 1, "memory_limit": "2GB"})
    lines = []
    outcome = refresh(config, "2026-04-25", log=lines.append)
    assert outcome.status == "first champion"
    parts = PartitionedDataset.open(tmp_path / "data" / "datasets" / "refresh-20260425T0000")
    read = next(line for line in lines if line.startswith("read "))
    assert read.endswith("(legitimate rows sampled at 0.3)")
    assert int(read.split()[1].replace(",", "")) < 0.8 * parts.rows
    # The challenger's training run says what it was trained on.
    client = mlflow.MlflowClient(config.tracking_uri())
    exp = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([exp.experiment_id],
                              filter_string="params.`training.negative_rate` = '0.3'")
    assert len(runs) == 1
