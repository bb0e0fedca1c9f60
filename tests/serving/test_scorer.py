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
