"""Fixtures of the serving tests: a model fitted on the session's labeled dataset, without
MLflow, carrying its declarations as a registered model does."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fitted(labeled_dataset):
    from fraudlab.training import TrainingConfig, build_protocol, fit_final
    from fraudlab.training._search import BASELINE_PARAMS

    cfg = TrainingConfig(n_splits=2, validation_window="14d", gap="7d",
                         calibration_window="14d", test_window="14d")
    protocol = build_protocol(labeled_dataset, cfg)
    fit = fit_final(protocol, {**BASELINE_PARAMS, "n_rounds": 30}, cfg)
    model = fit.scorer()
    model.declarations = labeled_dataset.attrs["features"]
    return model
