"""MLflow at the edge: one parent run per training, the served model, the registry aliases.

Everything is logged first; the model version is registered and the aliases move only at
the very end, so a failure anywhere leaves the registry as it was.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.features import LABEL, METADATA

from ._config import FraudlabConfig

CHAMPION, CHALLENGER = "champion", "challenger"


def git_commit() -> str:
    """The code version: the commit of the fraudlab checkout, ``+dirty`` if modified."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from fraudlab import __version__

        return f"unknown (fraudlab {__version__})"


def dataset_fingerprint(dataset: pd.DataFrame) -> str:
    """A content hash of the rows a model learns from: ids, times, labels and label times,
    and every feature value."""
    import hashlib

    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(dataset, index=False).to_numpy().tobytes())
    h.update(",".join(map(str, dataset.columns)).encode())
    return h.hexdigest()


def model_tags(result) -> dict[str, str]:
    """What scoring code and later refreshes read off a trained model: its tier thresholds
    and where its test window starts (tags of the training run and of the model version)."""
    tiers = result.model.spec["tiers"]
    return {TIER_TAGS["block"]: str(tiers["block"]),
            TIER_TAGS["review"]: str(tiers["review"]),
            "fraudlab.test_start": result.protocol_summary["times"]["test_start"],
            CODE_TAG: served_code_sha256()}


CODE_TAG = "fraudlab.code_sha256"
"""Tag of a run and its model version: the SHA-256 of the served model's code file."""

TIER_TAGS = {"block": "fraudlab.tier.block", "review": "fraudlab.tier.review"}
"""The model version's tags that hold the thresholds it is served at."""


def model_declarations(dataset: pd.DataFrame) -> dict:
    """What a model stores as ``features.json``: the declarations of its inputs and the
    settings they read, enough to recompute every input from raw rows."""
    from fraudlab.features import dataset_features, feature_settings

    doc = dataset.attrs.get("features")
    if doc:
        return dict(doc)
    return {**dataset_features(dataset).to_dict(), "settings": feature_settings()}


def served_code_sha256() -> str:
    """The SHA-256 of the served model's code file, as logged with every model."""
    import hashlib

    from . import _served

    return hashlib.sha256(Path(_served.__file__).read_bytes()).hexdigest()


class UntrustedModel(Exception):
    """A registered model whose code differs from what was recorded when it was logged."""


def _verified_model_dir(client, name: str, mv, run) -> Path:
    """Download a model version and check its code before anything of it runs.

    A model logged as code runs its code file when it is loaded: whoever can write the
    artifact store could otherwise make every process that loads the model run theirs.
    The code file's SHA-256 must equal the one recorded in the tracking store when the
    model was logged, it must be the only code (no ``code_paths``), and the loader must be
    MLflow's models-from-code loader.
    """
    import hashlib

    import mlflow
    import yaml

    expected = mv.tags.get(CODE_TAG) or run.data.tags.get(CODE_TAG)
    where = f"{name} version {mv.version}"
    if not expected:
        raise UntrustedModel(f"{where} has no recorded code hash ({CODE_TAG}); it was logged "
                             "by an older fraudlab: train it again")
    local = Path(tempfile.mkdtemp(prefix="fraudlab-model-"))
    mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=str(local))
    meta = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = meta.get("flavors", {}).get("python_function", {})
    code = pyfunc.get("model_code_path")
    if (pyfunc.get("loader_module") != "mlflow.pyfunc.loaders.code_model" or not code
            or Path(code).name != "_served.py" or pyfunc.get("code")):
        raise UntrustedModel(f"{where}: its MLmodel does not load fraudlab's served model "
                             "code (loader, code file or code paths changed)")
    digest = hashlib.sha256((local / Path(code).name).read_bytes()).hexdigest()
    if digest != expected:
        raise UntrustedModel(f"{where}: its code file changed since it was logged (SHA-256 "
                             f"{digest[:16]}..., recorded {expected[:16]}...); refusing to "
                             "load it. See docs/operations.md on write access to the "
                             "artifact store")
    return local


def setup_mlflow(config: FraudlabConfig):
    """Point MLflow at the configured store and experiment; returns an ``MlflowClient``.

    With the default SQLite store, artifacts go to ``<mlruns>/artifacts`` (never the
    working directory).
    """
    import os

    # A fraud platform sends nothing anywhere by itself, Makefile or not.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    if not config.tracking.uri:
        _create_sqlite_store(config)
    mlflow.set_tracking_uri(config.tracking_uri())
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(config.tracking.experiment)
    if exp is None:
        location = None
        if not config.tracking.uri:
            art = config.path(config.paths.mlruns).resolve() / "artifacts"
            art.mkdir(parents=True, exist_ok=True)
            location = art.as_uri()
        try:
            # A model-training experiment: MLflow's UI opens it on runs and models, not on
            # its GenAI overview.
            client.create_experiment(config.tracking.experiment, artifact_location=location,
                                     tags={"mlflow.experimentKind": "custom_model_development"})
        except mlflow.exceptions.MlflowException:
            # Another process created it first (two jobs on a new store): use theirs.
            if client.get_experiment_by_name(config.tracking.experiment) is None:
                raise
    mlflow.set_experiment(config.tracking.experiment)
    return client


def _create_sqlite_store(config: FraudlabConfig) -> None:
    """Create the default SQLite store in one step, if it does not exist yet.

    MLflow creates its tables through a series of migrations; a process killed half-way
    leaves a database that no later run can open. The store is therefore built under a
    temporary name and linked into place only when complete (``os.link`` fails if another
    process got there first, whose store is then used).
    """
    import os

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from ._failpoint import failpoint

    mlruns = config.path(config.paths.mlruns).resolve()
    db = mlruns / "mlflow.db"
    if db.exists():
        return
    mlruns.mkdir(parents=True, exist_ok=True)
    art = mlruns / "artifacts"
    art.mkdir(exist_ok=True)
    tmp = mlruns / f".mlflow.db.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    store = SqlAlchemyStore(f"sqlite:///{tmp}", art.as_uri())
    store.engine.dispose()
    failpoint("store")
    try:
        os.link(tmp, db)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _figures(study) -> dict:
    """Optuna's plots of a study, as figures (drawn through pyplot, which Optuna uses;
    the backend is the user's: a notebook's inline one, or Agg without a display)."""
    import optuna.visualization.matplotlib as ov

    out = {}
    for name, plot in (("optimization_history", ov.plot_optimization_history),
                       ("param_importances", ov.plot_param_importances)):
        try:
            ax = plot(study)
        except (ValueError, RuntimeError):  # too few finished trials for importances
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax[0].figure
        fig.set_size_inches(9, 5)
        fig.tight_layout()
        out[name] = fig
    return out


def trials_frame(study) -> pd.DataFrame:
    """One row per trial: number, state, value, parameters, fold scores, worker."""
    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs",
                                       "duration"))
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
    return df


def model_signature(spec: dict):
    """The served model's signature, built from the preprocessing spec rather than
    inferred from a few rows: every feature is optional (missing means missing),
    categorical features accept strings or pandas categoricals, the output is one fraud
    probability per row. A labeled dataset's metadata and label columns are declared
    too, as optional inputs the model ignores, so that a dataset scores as it is, without
    a warning about extra columns."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from fraudlab.features import LABEL, METADATA

    cats = spec.get("categories", {})
    ignored = [c for c in (*METADATA, LABEL) if c not in spec["features"]]
    inputs = Schema([ColSpec(AnyType() if f in cats else "double", f, required=False)
                     for f in spec["features"]]
                    + [ColSpec(AnyType(), c, required=False) for c in ignored])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "fraud_probability")]))


def log_training(result, dataset: pd.DataFrame, config: FraudlabConfig, *,
                 source: str = "<in-memory dataset>", extra_tags: dict | None = None) -> str:
    """Log one training as an MLflow parent run; returns the model URI (not registered).

    Parameters
    ----------
    result : TrainingResult
    dataset : DataFrame
        The labeled dataset the study saw (for lineage).
    source : str
        Where the dataset came from (a file path).
    """
    import optuna

    setup_mlflow(config)
    with warnings.catch_warnings():
        # Optuna's matplotlib plots are "experimental"; MLflow hints at input examples and
        # integer columns, which the explicit signature makes moot.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _log_training(result, dataset, config, source=source, extra_tags=extra_tags)


def _log_training(result, dataset, config, *, source, extra_tags) -> str:
    import mlflow

    from . import _served
    from ._failpoint import failpoint

    model, baseline, study = result.model, result.baseline, result.study
    tags = {
        "fraudlab.kind": "training",
        "fraudlab.git_commit": git_commit(),
        "fraudlab.catalog_version": dataset.attrs.get("catalog_version", "unknown"),
        "fraudlab.dataset_fingerprint": result.fingerprint,
        "fraudlab.as_of": str(dataset.attrs.get("as_of")),
        "fraudlab.study": study.study_name,
        **(extra_tags or {}),
    }
    with mlflow.start_run(run_name=result.run_name, tags=tags) as run:
        failpoint("training-run")
        t = config.training
        mlflow.log_params({f"training.{k}": (json.dumps(v) if isinstance(v, list) else v)
                           for k, v in t.model_dump().items()})
        mlflow.log_params({f"best.{k}": v for k, v in model.params.items()})
        mlflow.log_metrics({f"test.{k}": v for k, v in model.test_metrics.items()
                            if np.isfinite(v)})
        mlflow.log_metrics({f"baseline.test.{k}": v for k, v in baseline.test_metrics.items()
                            if np.isfinite(v)})
        mlflow.log_metrics({f"calibration.{k}": v for k, v in model.calibration_metrics.items()
                            if np.isfinite(v)})
        for prefix, fitted in (("test", model), ("baseline.test", baseline)):
            mlflow.log_metrics({f"{prefix}.recall_at_review.{k}": v
                                for k, v in fitted.type_recall.items()})
        mlflow.log_metrics({f"tuned_minus_baseline.{k}": model.test_metrics[k] - baseline.test_metrics[k]
                            for k in ("average_precision_score", "roc_auc_score",
                                      "recall_at_fpr_1pct_score")
                            if np.isfinite(model.test_metrics[k] - baseline.test_metrics[k])})
        best = study.best_trial
        mlflow.log_metric("search.best_value", best.value)
        for k, s in enumerate(best.user_attrs.get("fold_scores", [])):
            mlflow.log_metric(f"search.fold{k}_{t.objective}", s)
        trials = trials_frame(study)
        mlflow.log_table(trials, "optuna/trials.json")
        mlflow.log_dict({"study_name": study.study_name, "direction": "maximize",
                         "n_trials": len(trials),
                         "states": trials["state"].value_counts().to_dict(),
                         "best_trial": best.number, "best_value": best.value,
                         "best_params": best.params}, "optuna/study.json")
        import matplotlib.pyplot as plt

        for name, fig in _figures(study).items():
            mlflow.log_figure(fig, f"optuna/{name}.png")
            plt.close(fig)  # logged, not shown: a notebook shows only what it draws itself
        mlflow.log_dict(result.protocol_summary, "protocol.json")
        declarations = model_declarations(dataset)
        mlflow.log_dict(declarations, "features.json")
        left_out = model.spec.get("left_out", {})
        mlflow.log_params({"features.count": len(declarations["features"]),
                           "features.inputs": len(model.spec["features"]),
                           "features.version": tags["fraudlab.catalog_version"]})
        if left_out:  # constant or all missing in the rows the model learnt from
            mlflow.log_dict(left_out, "features_left_out.json")
        mlflow.log_dict(model.spec["tiers"], "tiers.json")
        # What the data and the decisions were read with: sources (column map, label
        # delay), features, contracts and evaluation settings, secrets hidden.
        dumped = config.model_dump(mode="json")
        settings = {k: dumped[k] for k in ("sources", "features", "contracts", "evaluation")}
        mlflow.log_dict(json.loads(_redact(json.dumps(settings))), "config.json")
        mlflow.log_params({"features.label_maturity": config.features.label_maturity,
                           "sources.default_label_delay": config.sources.default_label_delay,
                           "evaluation.review_capacity_per_day":
                               config.evaluation.review_capacity_per_day,
                           "evaluation.block_precision_target":
                               config.evaluation.block_precision_target})
        mlflow.set_tags(model_tags(result))
        mlflow.log_table(model.reliability, "calibration/reliability_test.json")
        if "contract" in dataset.attrs:
            mlflow.log_dict(dataset.attrs["contract"], "contracts/dataset.json")
        lineage = dataset[[c for c in (*METADATA, LABEL) if c in dataset.columns]]
        ds = mlflow.data.from_pandas(lineage, source=source, targets=LABEL,
                                     name=f"labeled-dataset-{result.fingerprint[:12]}",
                                     digest=result.fingerprint[:20])
        ds.schema = mlflow.data.from_pandas(_schema_rows(lineage), targets=LABEL).schema
        mature = dataset[dataset["is_mature"].to_numpy()]
        mlflow.log_input(ds, context="training", tags={
            "fingerprint": result.fingerprint, "as_of": str(dataset.attrs.get("as_of")),
            "ts_min": str(dataset["ts"].min()), "ts_max": str(dataset["ts"].max()),
            "rows": str(len(dataset)), "mature_rows": str(len(mature)),
            "frauds": str(int(mature[LABEL].sum())),
            # Below 1: trained on every fraud and this share of the legitimate rows (and
            # a folder is read with only that share of its older legitimate rows).
            "negative_rate": str(t.negative_rate)})
        if t.nested_runs:
            for tr in study.trials:
                with mlflow.start_run(run_name=f"trial {tr.number}", nested=True):
                    mlflow.log_params(tr.params)
                    if tr.value is not None:
                        mlflow.log_metric(t.objective, tr.value)
        with tempfile.TemporaryDirectory() as tmp:
            booster_dir = Path(tmp) / "booster"
            # Explicit requirements: inferring them starts a process that imports the model.
            mlflow.xgboost.save_model(model.booster, booster_dir, model_format="ubj",
                                      pip_requirements=[_xgboost_requirement()])
            spec_path = Path(tmp) / "preprocessing.json"
            spec_path.write_text(json.dumps(model.spec, indent=1))
            features_path = Path(tmp) / "features.json"
            features_path.write_text(json.dumps(declarations, indent=1, default=str))
            signature = model_signature(model.spec)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=_served.__file__,
                artifacts={"booster": str(booster_dir), "preprocessing": str(spec_path),
                           "features": str(features_path)},
                signature=signature,
                pip_requirements=[f"mlflow=={mlflow.__version__}",
                                  _xgboost_requirement(),
                                  f"numpy=={np.__version__}", f"pandas=={pd.__version__}"])
        result.run_id = run.info.run_id
    return info.model_uri


def register(model_uri: str, config: FraudlabConfig, *, tags: dict | None = None,
             aliases: bool = True) -> str:
    """Register a logged model; returns the version.

    With ``aliases`` (a plain training), the new version becomes ``challenger``, and
    ``champion`` too when there is none yet; the refresh cycle registers without aliases
    and moves them itself once its audit line is written.
    """
    import mlflow

    client = setup_mlflow(config)
    name = config.tracking.registered_model
    mv = mlflow.register_model(model_uri, name, tags=tags or {})
    if not aliases:
        return str(mv.version)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    return str(mv.version)


def _redact(text: str) -> str:
    """Hide the password of any URL in ``text`` (reports never print raw secrets)."""
    import re

    return re.sub(r"(\w+://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


def load_registered(config: FraudlabConfig, ref: str):
    """A registered model by ``NAME@ALIAS`` or ``NAME/VERSION`` (or an alias of the
    configured model), with its version record and training run. Its code file is
    checked against the SHA-256 recorded when it was logged before any of it runs.

    Raises
    ------
    UntrustedModel
        The model's code differs from what was recorded (or nothing was recorded).

    Returns
    -------
    scorer, version, run : FraudModel, ModelVersion, Run
    """
    import mlflow

    client = setup_mlflow(config)
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    else:
        name = config.tracking.registered_model
        mv = client.get_model_version_by_alias(name, ref)
    run = client.get_run(mv.run_id)
    local = _verified_model_dir(client, name, mv, run)
    try:
        model = mlflow.pyfunc.load_model(str(local))
    finally:
        import shutil

        shutil.rmtree(local, ignore_errors=True)
    scorer = model.unwrap_python_model()
    tiers = version_tiers(mv)
    if tiers is not None and tiers != scorer.spec.get("tiers"):
        # A kept champion's thresholds re-chosen by a later refresh (refresh.rethreshold_kept).
        scorer.spec = {**scorer.spec, "tiers": {**scorer.spec.get("tiers", {}), **tiers}}
    return scorer, mv, run


def version_tiers(mv) -> dict | None:
    """The block and review thresholds stored on a model version, or None when it has none.

    Registration stores the thresholds chosen in training; a refresh that keeps the
    champion may replace them with thresholds re-chosen on newer data.
    """
    tags = getattr(mv, "tags", None) or {}
    if not all(t in tags for t in TIER_TAGS.values()):
        return None
    return {k: float(tags[t]) for k, t in TIER_TAGS.items()}


def load_scorer(config: FraudlabConfig, ref: str):
    """A :class:`fraudlab.serving.Scorer` for ``NAME@ALIAS`` or ``NAME/VERSION``, loaded
    once through :func:`load_registered` (its code verified); no MLflow call afterwards."""
    from fraudlab.serving import Scorer

    model, _, _ = load_registered(config, ref)
    return Scorer(model)


def model_summary(config: FraudlabConfig, mv, run) -> dict:
    """The lineage of a model version, for reports (no secrets)."""
    tags, params = run.data.tags, run.data.params
    best = {k[5:]: v for k, v in params.items() if k.startswith("best.")}
    return {
        "model": f"{mv.name} version {mv.version}",
        "aliases": ", ".join(mv.aliases) or "none",
        "training run": run.info.run_id,
        "trained as of": tags.get("fraudlab.as_of", "?"),
        "test window starts": tags.get("fraudlab.test_start", "?"),
        "dataset fingerprint": tags.get("fraudlab.dataset_fingerprint", "?")[:16],
        "feature catalog": tags.get("fraudlab.catalog_version", "?"),
        "code version": tags.get("fraudlab.git_commit", "?"),
        "rebalancing": best.get("rebalancing", "?"),
        "boosting rounds / max depth / max_bin": f"{best.get('n_rounds', '?')} / "
        f"{best.get('max_depth', '?')} / {best.get('max_bin', '?')}",
        "calibration": params.get("training.calibration", "?"),
        "optuna study": tags.get("fraudlab.study", "?"),
        "tracking store": _redact(config.tracking_uri()),
    }


def _xgboost_requirement() -> str:
    """The installed distribution that provides ``xgboost`` (``xgboost`` or the CPU-only
    ``xgboost-cpu``), pinned, so that loading the model finds what it was saved with."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("xgboost", "xgboost-cpu"):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    import xgboost

    return f"xgboost=={xgboost.__version__}"


def _schema_rows(frame: pd.DataFrame, n: int = 10_000) -> pd.DataFrame:
    """Rows that give MLflow the schema of the whole frame: its first ``n`` and, for each
    column with a missing value, the first such row (so "required" is as for the whole).
    MLflow infers text columns element by element in Python (measured: 12 s for two text
    columns of 2M rows), which a refresh on tens of millions of rows would wait for."""
    missing = frame.isna().to_numpy()
    first = missing.argmax(axis=0)[missing.any(axis=0)]
    rows = np.union1d(np.arange(min(n, len(frame))), first)
    return frame.iloc[rows]
