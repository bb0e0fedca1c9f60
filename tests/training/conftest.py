"""Fixtures of the training tests: one small labeled dataset, fast search settings."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast_config(tmp_path):
    """A configuration whose study takes seconds: few trials, few rounds."""
    from fraudlab.training import load_config

    return load_config(None, paths={"root": str(tmp_path)}, training={
        "n_trials": 3, "n_splits": 2, "validation_window": "14d", "gap": "7d", "max_rounds": 60,
        "early_stopping_rounds": 10, "report_every": 10})
