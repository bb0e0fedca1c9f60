"""One training: protocol, study, final fit, baseline, and (optionally) MLflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ._config import FraudlabConfig
from ._fit import FittedModel, fit_final
from ._protocol import Protocol, build_protocol
from ._search import BASELINE_PARAMS, params_of


@dataclass
class TrainingResult:
    """What a training produced.

    Attributes
    ----------
    model : FittedModel
        The tuned, refit and calibrated model with its test metrics.
    baseline : FittedModel
        XGBoost's defaults (no tuning, no rebalancing) under the same protocol.
    study : optuna.Study
    fingerprint : str
        Content hash of the labeled dataset.
    protocol : Protocol
        The encoded windows the model was tuned, fitted and tested on.
    run_id, model_uri, version : str or None
        Set when logged to MLflow and registered.
    """

    model: FittedModel
    baseline: FittedModel
    study: object
    fingerprint: str
    run_name: str
    protocol: Protocol = field(repr=False)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None

    @property
    def protocol_summary(self) -> dict:
        """Windows, rows and frauds of every fold and window."""
        return self.protocol.summary()


def train_model(dataset: pd.DataFrame, config: FraudlabConfig | None = None, *,
                dataset_path: str | Path | None = None, log: bool = True,
                register: bool = True, callbacks: Sequence[Callable] = (),
                tags: dict | None = None, enqueue: dict | None = None,
                study_name: str | None = None) -> TrainingResult:
    """Tune, refit, calibrate and test a fraud model on a labeled dataset.

    Parameters
    ----------
    dataset : DataFrame
        From :func:`fraudlab.features.build_dataset` (metadata, label, features).
    config : FraudlabConfig, optional
    dataset_path : path, optional
        The dataset's file: lineage source, and what extra worker processes load.
    log, register : bool
        Log the run to MLflow; register the model (``challenger``, and ``champion`` for
        the first version). Registration happens only after everything is logged.
    callbacks : sequence of callables
        Optuna callbacks for progress.
    tags : dict, optional
        Extra MLflow run tags.
    enqueue : dict, optional
        Parameters to try first (a warm start from the champion's).
    study_name : str, optional
        The Optuna study; default ``training.study_name``, else one named after the
        dataset's fingerprint and the seed.

    Returns
    -------
    TrainingResult
    """
    from ._registry import dataset_fingerprint, log_training, model_tags
    from ._registry import register as register_model
    from ._study import run_study

    config = config or FraudlabConfig()
    fingerprint = dataset_fingerprint(dataset)
    protocol = build_protocol(dataset, config.training)
    name = (study_name or config.training.study_name
            or f"fraudlab-{fingerprint[:12]}-seed{config.training.seed}")
    study = run_study(protocol, config, name, dataset_path=dataset_path, callbacks=callbacks,
                      enqueue=enqueue)
    complete = [t for t in study.trials if t.value is not None]
    if not complete:
        raise RuntimeError(f"study {name!r} finished no trial (all pruned or failed)")
    model = fit_final(protocol, params_of(study.best_trial), config.training, config.evaluation)
    baseline = fit_final(protocol, BASELINE_PARAMS, config.training, config.evaluation)
    result = TrainingResult(model=model, baseline=baseline, study=study,
                            fingerprint=fingerprint,
                            run_name=f"train as of {dataset.attrs.get('as_of', '?')}",
                            protocol=protocol)
    if log:
        result.model_uri = log_training(result, dataset, config, source=str(dataset_path or
                                        "<in-memory dataset>"), extra_tags=tags)
        if register:
            result.version = register_model(result.model_uri, config, tags={
                "fraudlab.run_id": result.run_id, "fraudlab.dataset_fingerprint": fingerprint,
                **model_tags(result)})
    return result
