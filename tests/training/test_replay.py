"""`fraudlab replay`: the raw tables replayed one event at a time equal `features build`, and
with a registered model every payment gets the score and tier the model gives it in batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlab.training._cli import app

runner = CliRunner()


@pytest.mark.slow
def test_replay_equals_the_batch_build_and_scores_as_the_model(trained):
    import mlflow

    from fraudlab.serving import Scorer
    from fraudlab.training import load_config, load_registered

    root, cfg, ds, AS_OF = trained
    out = root / "online.parquet"
    result = runner.invoke(app, ["replay", "--as-of", AS_OF, "--out", str(out),
                                 "--model", "fraudlab-fraud@champion", "-c", str(cfg)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "late rows 0" in result.output and "tiers: block" in result.output
    online = pd.read_parquet(out).set_index("tx_id")
    batch = pd.read_parquet(ds).set_index("tx_id")
    assert len(online) == len(batch)  # the dataset holds every transaction before as-of
    online = online.loc[batch.index]
    config = load_config(cfg)
    model, _, _ = load_registered(config, "fraudlab-fraud@champion")
    for name in model.spec["features"]:
        b, o = batch[name], online[name]
        if isinstance(b.dtype, pd.CategoricalDtype):
            assert b.astype(object).where(b.notna(), None).tolist() == \
                   o.astype(object).where(o.notna(), None).tolist(), name
        else:
            np.testing.assert_allclose(b.to_numpy(float), o.to_numpy(float).astype(b.dtype),
                                       rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)
    mlflow.set_tracking_uri(config.tracking_uri())
    pyfunc = mlflow.pyfunc.load_model("models:/fraudlab-fraud@champion")
    expected = pyfunc.predict(batch.reset_index())
    np.testing.assert_allclose(online["fraud_probability"].to_numpy(), expected, rtol=1e-6)

    # The one-row scorer gives the same score and tier, payment by payment.
    scorer = Scorer(model)
    from fraudlab.features import event_stream, load_raw

    tables = load_raw(root / "raw", config.sources, as_of=AS_OF)
    seen = {}
    for table, row in event_stream({k: t.frame for k, t in tables.tables.items()}):
        if table == "transactions":
            s = scorer.score(row)
            seen[s.tx_id] = (s.probability, s.tier)
        else:
            scorer.update(table, row)
    got = np.array([seen[t][0] for t in online.index])
    np.testing.assert_allclose(got, online["fraud_probability"].to_numpy(), rtol=1e-6)
    assert [seen[t][1] for t in online.index] == online["tier"].tolist()


def test_replay_without_a_model_writes_the_configured_features(trained, tmp_path):
    root, cfg, _, _ = trained
    out = tmp_path / "online.parquet"
    result = runner.invoke(app, ["replay", "--as-of", "2026-01-20", "--out", str(out),
                                 "-c", str(cfg)], terminal_width=200)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    from fraudlab.features import CATALOG

    assert list(frame.columns) == ["tx_id", *[f.name for f in CATALOG]]
    assert f"wrote {out}: {len(frame):,} transactions x {len(CATALOG)} features" in \
        " ".join(result.output.split())
