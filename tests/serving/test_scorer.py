"""The one-payment scorer: features, model, calibration and tier of each payment equal the
batch build scored as a frame, with no MLflow on the path."""

from __future__ import annotations

import numpy as np
import pytest

from fraudlab.evaluation import tier_of
from fraudlab.features import event_stream
from fraudlab.serving import Scorer


def test_each_payment_scores_as_the_model_scores_the_batch_dataset(fitted, small_world):
    """A model trained on one world scores another's payments one by one: the same
    probabilities and tiers as the batch build of that world scored as one frame."""
    import pandas as pd

    from fraudlab.features import build_dataset

    tables = small_world.tables()
    as_of = tables["transactions"]["ts"].max() + pd.Timedelta("1s")
    batch = build_dataset(tables, as_of, validate=False)
    scorer = Scorer(fitted)
    got = {}
    for table, row in event_stream(tables):
        if table == "transactions":
            s = scorer.score(row)
            got[s.tx_id] = (s.probability, s.tier)
        else:
            scorer.update(table, row)
    want = fitted.predict(None, batch)
    p = np.array([got[t][0] for t in batch["tx_id"]])
    np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-9)
    tiers = [got[t][1] for t in batch["tx_id"]]
    assert tiers == tier_of(want, fitted.spec["tiers"]).tolist()
    assert {"block", "review", "pass"} >= set(tiers) and "pass" in tiers
    assert len(got) == len(batch) > 1_000
    assert scorer.online.late == 0


def test_a_model_without_its_declarations_cannot_score(fitted):
    from fraudlab.training._served import FraudModel

    bare = FraudModel().load(fitted.spec, fitted.booster)
    with pytest.raises(ValueError, match="carries no features.json"):
        Scorer(bare)


@pytest.mark.parametrize("params", [
    {"max_depth": 6, "base_score": 0.02},
    {"max_depth": 2, "min_child_weight": 0.0, "reg_lambda": 0.0},
    {"max_depth": 8, "objective": "binary:logitraw"},
    {"max_depth": 4, "booster": "dart", "rate_drop": 0.3},
], ids=["deep", "stumps", "logitraw", "dart"])
def test_one_row_margins_equal_xgboost_on_rows_with_missing_values(fitted, params):
    """The scorer's margin of one row equals XGBoost's own for boosters of several shapes,
    on rows with missing values and values exactly at split thresholds; a booster it does
    not walk (dart) is scored by XGBoost itself."""
    import xgboost as xgb

    from fraudlab.features import OnlineFeatures
    from fraudlab.training._served import FraudModel

    rng = np.random.default_rng(7)
    n, k = 600, len(fitted.spec["features"])
    X = rng.normal(size=(n, k)).astype(np.float32)
    X[rng.random((n, k)) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * 0.5 + rng.normal(size=n) > 1).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "seed": 1, **params},
                        xgb.DMatrix(X, y), num_boost_round=40)
    scorer = Scorer(FraudModel().load(fitted.spec, booster),
                    online=OnlineFeatures(fitted.declarations))
    walked = params.get("booster") != "dart"
    assert (scorer.forest is not None) == walked
    # Rows with values at the thresholds themselves: the float32 comparison's edge.
    splits = booster.trees_to_dataframe().dropna(subset=["Split"])
    at = np.full((50, k), np.nan, np.float32)
    for name, cut in splits.groupby("Feature")["Split"]:
        at[:, booster.feature_names.index(name) if booster.feature_names else int(name[1:])] = \
            rng.choice(cut.to_numpy(np.float32), 50)
    rows = np.concatenate([X[:200], at])
    want = booster.inplace_predict(rows, predict_type="margin")
    got = np.array([scorer.margin(rows[i:i + 1]) for i in range(len(rows))])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.ptp(want) > 1.0  # the trees split these rows apart
