"""Fixtures of the training tests: one small labeled dataset, fast search settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fraudlab.training._cli import app


@pytest.fixture
def fast_config(tmp_path):
    """A configuration whose study takes seconds: few trials, few rounds."""
    from fraudlab.training import load_config

    return load_config(None, paths={"root": str(tmp_path)}, training={
        "n_trials": 3, "n_splits": 2, "validation_window": "14d", "gap": "7d", "max_rounds": 60,
        "early_stopping_rounds": 10, "report_every": 10})


AS_OF = "2026-04-25"
runner = CliRunner()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A world of 600 accounts over 110 days after 30 days of history, its dataset built
    and a model trained and registered through the CLI: (root, config file, dataset file,
    as-of time)."""
    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import write_tables

    root = tmp_path_factory.mktemp("replay")
    w = simulate_world(SimulationConfig(accounts=600, days=110, seed=21, history_days=30))
    write_tables(w.tables(), root / "raw", w.manifest)
    cfg = root / "fraudlab.yaml"
    cfg.write_text(f"paths: {{root: {root}, raw: raw}}\n"
                   "training: {n_trials: 2, n_splits: 2, validation_window: 14d, gap: 7d, "
                   "max_rounds: 40, early_stopping_rounds: 10, report_every: 10}\n")
    ds = root / "dataset.parquet"
    result = runner.invoke(app, ["features", "build", "--as-of", AS_OF, "--out", str(ds),
                                 "-c", str(cfg)], terminal_width=200)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--dataset", str(ds), "-c", str(cfg)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return root, cfg, ds, AS_OF
