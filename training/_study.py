"""Optuna studies: storage from config, seeded sampler, sparse pruning, worker processes."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ._config import FraudlabConfig


def storage_url(config: FraudlabConfig) -> str | None:
    """The Optuna storage of the configuration: None for memory, a URL otherwise.

    ``sqlite`` and ``journal`` put a file under ``paths.mlruns``; anything else is taken
    as a database URL with ``${ENV}`` variables expanded (credentials stay in the
    environment).
    """
    kind = config.training.storage
    if kind == "memory":
        return None
    mlruns = config.path(config.paths.mlruns).resolve()
    if kind == "sqlite":
        mlruns.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{mlruns / 'optuna.db'}"
    if kind == "journal":
        mlruns.mkdir(parents=True, exist_ok=True)
        return f"journal:{mlruns / 'optuna-journal.log'}"
    from fraudlab.features import expand_env

    return expand_env(kind, "training.storage")


def _storage(url: str | None):
    import optuna

    if url is None:
        return None
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    import warnings

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A worker that dies mid-trial stops beating; its trial is then marked failed.
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)


def create_study(config: FraudlabConfig, study_name: str, url: str | None, *, seed_offset: int = 0,
                 storage=None):
    """Create or load the study: TPE seeded from config, median pruning over the sparse
    intermediate reports, maximising the objective."""
    import optuna

    t = config.training
    sampler = optuna.samplers.TPESampler(seed=t.seed + seed_offset)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * t.report_every)
    return optuna.create_study(storage=storage if storage is not None else _storage(url),
                               study_name=study_name, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


@contextlib.contextmanager
def _share_cores(workers: int):
    """While the study runs, give each of ``workers`` processes its share of the cores
    (``$FRAUDLAB_THREADS``, inherited by the worker processes): no oversubscription."""
    before = os.environ.get("FRAUDLAB_THREADS")
    if workers > 1 and before is None:
        os.environ["FRAUDLAB_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FRAUDLAB_THREADS", None)


def _shares(total: int, workers: int) -> list[int]:
    return [total // workers + (i < total % workers) for i in range(workers)]


def _worker(dataset_path: str, config_json: str, url: str, study_name: str, n_trials: int,
            index: int) -> None:
    """One worker process: rebuild the protocol from the dataset file, run its trials."""
    import optuna

    from ._config import FraudlabConfig
    from ._pipeline import read_for_training
    from ._protocol import build_protocol
    from ._search import Objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = FraudlabConfig.model_validate_json(config_json)
    protocol = build_protocol(read_for_training(Path(dataset_path), config.training),
                              config.training)
    study = create_study(config, study_name, url, seed_offset=index)
    study.optimize(Objective(protocol, config.training, config.evaluation), n_trials=n_trials,
                   timeout=config.training.timeout, gc_after_trial=True)


def run_study(protocol, config: FraudlabConfig, study_name: str, *,
              dataset_path: str | Path | None = None,
              callbacks: Sequence[Callable] = (), enqueue: dict | None = None):
    """Run the configured number of trials on one study, in this process and, with
    ``training.workers > 1``, in extra worker processes sharing the storage.

    Parameters
    ----------
    protocol : Protocol
        The encoded windows (this process's worker uses them directly).
    dataset_path : path, optional
        The labeled dataset as a Parquet file; extra workers load it themselves.
    callbacks : sequence of callables
        Optuna callbacks ``(study, trial)`` run in this process (e.g. progress).
    enqueue : dict, optional
        Trial parameters to evaluate first in a new study (a warm start).

    Returns
    -------
    optuna.Study
    """
    import optuna

    from ._search import Objective

    t = config.training
    url = storage_url(config)
    if t.workers > 1 and url is None:
        raise ValueError("training.workers > 1 needs a shared storage (sqlite, journal or a "
                         "database URL), not memory")
    if t.workers > 1 and dataset_path is None:
        raise ValueError("worker processes need the labeled dataset as a file (dataset_path)")
    shares = _shares(t.n_trials, t.workers)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url)
    study = create_study(config, study_name, url, storage=storage)
    if enqueue and not study.trials:
        study.enqueue_trial(enqueue, skip_if_exists=True)
    ctx = mp.get_context("spawn")
    with _share_cores(t.workers):
        procs = [ctx.Process(target=_worker, args=(str(dataset_path), config.model_dump_json(),
                                                   url, study_name, n, i), daemon=False)
                 for i, n in enumerate(shares[1:], start=1) if n]
        for p in procs:
            p.start()
        try:
            study.optimize(Objective(protocol, t, config.evaluation), n_trials=shares[0],
                           timeout=t.timeout, callbacks=list(callbacks), gc_after_trial=True)
        finally:
            for p in procs:
                p.join()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} worker process(es) failed (exit codes {failed})")
    return study
