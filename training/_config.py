"""The one typed configuration of fraudlab, composed from every stage's section.

Each stage owns the model of its own section; this module only composes them, loads
YAML and resolves paths, so a lower stage never needs to know about a higher one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudlab.data_contracts import ContractsConfig, parse_duration
from fraudlab.datasets import SimulationConfig
from fraudlab.evaluation import EvaluationConfig
from fraudlab.features import FeaturesConfig, SourcesConfig
from fraudlab.serving import ServingConfig

CONFIG_ENV = "FRAUDLAB_CONFIG"


class PathsConfig(BaseModel):
    """Where things live. Relative paths are resolved against ``root``."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(
        ".", description="Project root; relative to the config file's folder, or to the "
        "working directory when no file is given.")
    raw: str = Field("data/world", description="Raw tables (the simulated world by default).")
    reports: str = Field("reports", description="HTML and JSON reports.")
    mlruns: str = Field("mlruns", description="Embedded MLflow store (never committed).")


class TrackingConfig(BaseModel):
    """MLflow tracking and registry."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(
        None, description="Tracking URI; default sqlite:///<mlruns>/mlflow.db. A server: "
        "http://host:5000. Credentials come from environment variables, never from here.")
    experiment: str = Field("fraudlab", description="MLflow experiment name.")
    registered_model: str = Field("fraudlab-fraud", description="Registered model name.")


Strategy = Literal["none", "scale_pos_weight", "undersample", "smote", "over_under"]
Objective = Literal["average_precision", "recall_at_fpr", "account_precision_at_k", "expected_cost"]


class TrainingConfig(BaseModel):
    """The Optuna search over XGBoost, the temporal protocol and the final model."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int = Field(30, ge=1, description="Trials in the study (over all workers).")
    timeout: float | None = Field(
        None, gt=0, description="Stop starting new trials after this many seconds.")
    workers: int = Field(1, ge=1, description="Worker processes sharing one study (needs a "
                         "storage other than memory).")
    seed: int = Field(42, description="Seed of the sampler, the samplers of rows and XGBoost.")
    objective: Objective = Field(
        "average_precision", description="What the search maximises, averaged over folds: "
        "average_precision, recall_at_fpr, account_precision_at_k, or expected_cost "
        "(minimised, as a negative number).")
    objective_fpr: float = Field(0.01, gt=0, lt=1, description="FPR for recall_at_fpr.")
    objective_k: int = Field(100, ge=1, description="Accounts a day for account_precision_at_k.")
    n_splits: int = Field(3, ge=1, description="Walk-back validation folds.")
    validation_window: str = Field("7d", description="Length of each validation window.")
    gap: str | None = Field(
        None, description="Label delay between a training cut and the data the model is "
        "judged on (also before the test window), so that everything a model learns from "
        "is mature when it is deployed; default: features.label_maturity.")
    train_window: str | None = Field(
        None, description="How much history a model learns from: the sliding training "
        "window of each fold and of the final fit (before calibration); none: all history.")
    calibration_window: str = Field(
        "14d", description="Held-out window before the test window for calibration.")
    test_window: str = Field(
        "14d", description="Final out-of-time window that tuning never sees.")
    negative_rate: float = Field(
        1.0, gt=0, le=1, description="Share of the legitimate rows the models are trained on "
        "(all frauds kept; the sampled rows weigh 1/rate, so fraud ratios and rebalancing "
        "targets keep their meaning); validation, calibration and test windows keep every "
        "row. Below 1, a partitioned dataset is read sampled, part by part.")
    calibration: Literal["isotonic", "sigmoid"] = Field(
        "sigmoid", description="Probability calibration: sigmoid (Platt; keeps the ranking, "
        "robust with few frauds) or isotonic (flexible, but its flat steps tie scores and "
        "it needs a few hundred frauds in the calibration window).")
    strategies: list[Strategy] = Field(
        ["none", "scale_pos_weight", "undersample", "smote", "over_under"],
        description="Class-rebalancing strategies the search chooses from.")
    max_rounds: int = Field(600, ge=10, description="Upper bound on boosting rounds; early "
                            "stopping picks the number.")
    early_stopping_rounds: int = Field(40, ge=1, description="Rounds without improvement of "
                                       "validation average precision before stopping.")
    report_every: int = Field(
        25, ge=1, description="Report to the pruner every N rounds (not every round).")
    storage: str = Field(
        "memory", description="Optuna storage: memory, sqlite or journal (files under "
        "mlruns/), or a database URL such as postgresql+psycopg://host/db (${ENV} expanded).")
    study_name: str | None = Field(
        None, description="Study name; default derived from the dataset fingerprint and seed.")
    nested_runs: bool = Field(False, description="Log every trial as a nested MLflow run "
                              "(the trials table is always logged).")


class RefreshConfig(BaseModel):
    """The periodic refresh: promotion rule, warm starts, locking, audit and backtests."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["process", "dask"] = Field(
        "process", description="How a refresh builds its dataset: in this process, or on the "
        "Dask cluster of the dask section, as a partitioned dataset read back sampled "
        "(training.negative_rate) and only as far back as the protocol needs.")
    rule: Literal["operating_point", "average_precision"] = Field(
        "operating_point", description="How a challenger is promoted. operating_point: both "
        "models are thresholded the same way on the same calibration window and compared on "
        "the newest matured window by the fraud amount their block and review tiers catch, "
        "with a paired bootstrap interval (resampling accounts); promote when the interval's "
        "lower bound is above min_gain and false blocks rise by at most "
        "max_false_block_increase a day. average_precision: the challenger's average "
        "precision must exceed the champion's plus promotion_margin, and its block tier keep "
        "tier_precision_floor (strictly above: a tie never promotes); the operating-point "
        "comparison is then given in the reasons for information.")
    confidence: float = Field(
        0.9, gt=0, lt=1, description="Coverage of the bootstrap intervals of the "
        "operating_point rule.")
    bootstrap_resamples: int = Field(
        2000, ge=100, description="Bootstrap resamples of the operating_point rule (seeded "
        "by training.seed).")
    min_gain: float = Field(
        0.0, ge=0, description="operating_point: the lower bound of the caught fraud amount's "
        "gain (currency units over the window) must be above this; a tie never promotes.")
    max_false_block_increase: float = Field(
        1.0, ge=0, description="operating_point: legitimate payments blocked per day that the "
        "challenger may add to the champion's.")
    promotion_margin: float = Field(
        0.0, description="average_precision: promote when the challenger's average precision "
        "on the newest matured window exceeds the champion's plus this margin ...")
    tier_precision_floor: float = Field(
        0.5, ge=0, le=1, description="average_precision: ... and its block tier's precision "
        "there is at least this (when it blocks anything).")
    champion_floor: float = Field(
        0.0, ge=0, le=1, description="Promote regardless of the gain when the champion's "
        "average precision has decayed below this floor (and the challenger's is higher), "
        "if the rule's guard (block precision or false blocks) holds.")
    warn_score_psi: float = Field(
        0.25, gt=0, description="Warn (in the decision, the report and the audit log) when "
        "the champion's score PSI between its training period and the newest window exceeds "
        "this, whatever is decided.")
    warn_fraud_rate_ratio: float = Field(
        2.0, gt=1, description="Warn when the fraud rate of the newest window differs from "
        "the champion's training period by more than this factor, either way.")
    rethreshold_kept: bool = Field(
        True, description="When the champion is kept, its block and review thresholds are "
        "re-chosen on the newest calibration window (the ones it was compared at) and stored "
        "on its model version (tags fraudlab.tier.block and fraudlab.tier.review), so the "
        "model that stays runs at the operating point the decision measured; scorers and "
        "the service load them. Off: the champion keeps the thresholds it was trained with.")
    warm_start: bool = Field(
        True, description="Seed the challenger's study with the champion's parameters.")
    lock_timeout: float = Field(
        3600, ge=0, description="Seconds to wait for another refresh holding the lock.")
    lock_url: str | None = Field(
        None, description="PostgreSQL database whose advisory lock serialises refreshes "
        "across machines (postgresql://host/db, ${ENV} expanded): the database behind a "
        "shared MLflow server. Default: the tracking URI when it is PostgreSQL, else a file "
        "lock under paths.mlruns (one machine).")
    audit_log: str = Field("reports/audit.jsonl", description="Append-only audit log.")
    drift_psi: float = Field(
        0.25, gt=0, description="Backtest 'drift' policy: retrain when a top-10 feature's PSI "
        "or the score PSI exceeds this.")


class DaskConfig(BaseModel):
    """The Dask cluster of ``features build --engine dask`` (extra ``fraudlab[dask]``)."""

    model_config = ConfigDict(extra="forbid")

    scheduler: str = Field(
        "", description="Address of a running Dask scheduler (tcp://host:8786, ${ENV} "
        "expanded); empty: a LocalCluster of worker processes on this machine, on 127.0.0.1.")
    workers: int = Field(2, ge=1, description="Worker processes of the LocalCluster.")
    threads_per_worker: int = Field(1, ge=1, description="Threads of each LocalCluster worker.")
    memory_limit: str = Field(
        "6GB", description="Memory cap of each LocalCluster worker (Dask pauses, then "
        "restarts, a worker above it).")
    partitions: int | None = Field(
        None, ge=1, description="Buckets each entity key is hashed into; default about a "
        "million transactions per bucket and at least two per worker.")
    block: str = Field("7d", description="Time span of one part of the partitioned dataset.")
    scratch: str = Field(
        "", description="Folder the build's stages exchange files through; on several "
        "machines, storage every worker reads and writes. Default: next to the output.")


class FraudlabConfig(BaseModel):
    """Everything configurable in fraudlab; every field has a documented default."""

    model_config = ConfigDict(extra="forbid")

    paths: PathsConfig = Field(default_factory=PathsConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    contracts: ContractsConfig = Field(default_factory=ContractsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as plain text or JSON lines (for orchestrators).")

    @model_validator(mode="after")
    def _maturity_covers_the_label_delay(self) -> FraudlabConfig:
        # Labels dated by a configured sources.default_label_delay arrive that long after
        # the payment: a row is not mature before then, whatever the default maturity says.
        # The delay's own default says nothing of the user's labels and is not enforced.
        delay, maturity = self.sources.default_label_delay, self.features.label_maturity
        if ("default_label_delay" in self.sources.model_fields_set
                and parse_duration(maturity) < parse_duration(delay)):
            if "label_maturity" in self.features.model_fields_set:
                raise ValueError(
                    f"features.label_maturity {maturity} is shorter than "
                    f"sources.default_label_delay {delay}: rows would count as mature before "
                    "the labels assumed for them arrive; set label_maturity to at least "
                    f"{delay}")
            self.features.label_maturity = delay
        return self

    @model_validator(mode="after")
    def _gap_defaults_to_label_maturity(self) -> FraudlabConfig:
        if self.training.gap is None:
            self.training.gap = self.features.label_maturity
        return self

    def path(self, relative: str) -> Path:
        """Resolve a configured path against ``paths.root``."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.paths.root) / p

    def tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to SQLite inside ``paths.mlruns``."""
        if self.tracking.uri:
            return self.tracking.uri
        return f"sqlite:///{self.path(self.paths.mlruns).resolve() / 'mlflow.db'}"


def load_config(path: str | Path | None = None, **overrides) -> FraudlabConfig:
    """Load the configuration from YAML, filling every missing field with its default.

    Parameters
    ----------
    path : path, optional
        A YAML file. Without one, ``$FRAUDLAB_CONFIG`` is used if set, else the defaults.
    **overrides
        Top-level sections to replace, e.g. ``simulation={"accounts": 500}``.

    Returns
    -------
    FraudlabConfig
        With ``paths.root`` made absolute (relative to the file's folder, or to the
        working directory without a file).
    """
    path = path or os.environ.get(CONFIG_ENV)
    data: dict = {}
    base = Path.cwd()
    if path:
        p = Path(path)
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: the configuration must be a mapping of sections")
        base = p.resolve().parent
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    cfg = FraudlabConfig.model_validate(data)
    root = Path(cfg.paths.root)
    cfg.paths.root = str(root if root.is_absolute() else (base / root).resolve())
    return cfg


def config_to_yaml(config: FraudlabConfig) -> str:
    """The effective configuration as YAML, with each field's description as a comment."""
    lines: list[str] = []

    def emit(model: BaseModel, indent: int) -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            pad = "  " * indent
            if info.description:
                lines.append(f"{pad}# {info.description}")
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:")
                emit(value, indent + 1)
            else:
                dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True,
                                        sort_keys=False, width=1000).strip()
                lines.append(f"{pad}{dumped[1:-1] if dumped.startswith('{') else dumped}")

    emit(config, 0)
    return "\n".join(lines) + "\n"


def _plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
