"""One refresh period: the platform's main job, composing every stage.

validate -> build -> train a challenger -> compare with the champion on the newest matured
window -> drift and new patterns -> report -> (only now) register and move the aliases ->
audit log. A refresh for an as-of time that already completed does nothing; a lock keeps
two refreshes from running at once; a failure before the end leaves the registry as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration
from fraudlab.evaluation import compare_periods, evaluate, render_report, tier_of
from fraudlab.features import LABEL

from ._config import FraudlabConfig


class RefreshLocked(Exception):
    """Another refresh held the lock for longer than ``refresh.lock_timeout``."""


@dataclass
class RefreshOutcome:
    """What a refresh decided and why; also written to MLflow and the audit log."""

    as_of: str
    status: str  # "promoted", "kept", "first champion", "already done"
    reasons: list[str]
    champion_version: str | None
    challenger_version: str | None
    metrics: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    patterns: list = field(default_factory=list)
    report: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _key(as_of: pd.Timestamp) -> str:
    return as_of.isoformat()


def find_completed(client, config: FraudlabConfig, as_of: pd.Timestamp) -> RefreshOutcome | None:
    """The outcome of a refresh already completed for this as-of time, if any."""
    exp = client.get_experiment_by_name(config.tracking.experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`fraudlab.refresh_key` = '{_key(as_of)}' and "
                              "tags.`fraudlab.refresh_complete` = 'true'", max_results=1)
    if not runs:
        return None
    path = client.download_artifacts(runs[0].info.run_id, "refresh/decision.json")
    data = json.loads(Path(path).read_text())
    data["status"] = "already done"
    return RefreshOutcome(**data)


@contextlib.contextmanager
def refresh_lock(config: FraudlabConfig, log: Callable[[str], None] = print):
    """An exclusive lock on ``<mlruns>/refresh.lock`` (one refresh at a time per store).

    Waits up to ``refresh.lock_timeout`` seconds, then raises :class:`RefreshLocked`.
    """
    path = config.path(config.paths.mlruns).resolve() / "refresh.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + config.refresh.lock_timeout
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log(f"another refresh holds {path}; waiting (up to "
                        f"{config.refresh.lock_timeout:.0f} s)")
                    announced = True
                if time.monotonic() >= deadline:
                    raise RefreshLocked(f"another refresh still holds {path}") from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _frame_of(dataset: pd.DataFrame, tx_ids) -> pd.DataFrame:
    return dataset.set_index("tx_id").loc[list(tx_ids)].reset_index()


def _decide(config: FraudlabConfig, champ: dict | None, chall: dict) -> tuple[bool, list[str]]:
    r = config.refresh
    if champ is None:
        return True, ["no champion yet: the first model becomes champion"]
    ap_c, ap_n = champ["average_precision_score"], chall["average_precision_score"]
    prec = chall.get("block_precision")
    reasons = [f"challenger average precision {ap_n:.4f} vs champion {ap_c:.4f} "
               f"(margin {r.promotion_margin:+.4f})"]
    tier_ok = prec is None or np.isnan(prec) or prec >= r.tier_precision_floor
    reasons.append(f"challenger block-tier precision {prec if prec is not None else float('nan'):.3f} "
                   f"(floor {r.tier_precision_floor:.2f}): {'ok' if tier_ok else 'below floor'}")
    better = ap_n >= ap_c + r.promotion_margin
    decayed = ap_c < r.champion_floor and ap_n > ap_c
    if decayed:
        reasons.append(f"champion decayed below its floor {r.champion_floor:.3f}")
    return (better or decayed) and tier_ok, reasons


def _window_scores(model, frame: pd.DataFrame) -> tuple[dict, np.ndarray]:
    """A model's metrics on the decision window, and its tier for every row."""
    from ._fit import window_metrics

    p = model.predict(None, frame)
    y = frame[LABEL].to_numpy().astype(np.int8)
    out = window_metrics(y, p, frame)
    tiers = tier_of(p, model.spec["tiers"])
    blocked = tiers == "block"
    out["block_precision"] = float(y[blocked].mean()) if blocked.any() else float("nan")
    out["flagged_recall"] = float((tiers[y == 1] != "pass").mean()) if y.any() else float("nan")
    return out, tiers


def refresh(config: FraudlabConfig, as_of, *, log: Callable[[str], None] = print,
            callbacks=()) -> RefreshOutcome:
    """Run one refresh period as of ``as_of``.

    Raises
    ------
    ContractFailure
        A contract failed: nothing was trained, registered or promoted.
    SourceError
        A source could not be read.
    RefreshLocked
        Another refresh kept the lock too long.
    """
    import mlflow

    from ._pipeline import build_and_save
    from ._registry import CHAMPION, load_registered, model_tags, register, setup_mlflow
    from ._train import train_model

    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    # The lock comes first: even creating a new tracking store must not race another refresh.
    with refresh_lock(config, log):
        client = setup_mlflow(config)
        done = find_completed(client, config, as_of)
        if done:
            log(f"refresh as of {as_of} already completed (run {done.run_id}): nothing to do")
            return done
        stamp = f"{as_of:%Y%m%dT%H%M}"
        log("validating the raw data and building the labeled dataset ...")
        path = config.path("data/datasets") / f"refresh-{stamp}.parquet"
        dataset = build_and_save(config, as_of, path)
        name = config.tracking.registered_model
        champion = champ_mv = champ_run = None
        try:
            champion, champ_mv, champ_run = load_registered(config, f"{name}@{CHAMPION}")
        except mlflow.exceptions.MlflowException:
            log("no champion yet: this refresh trains the first one")
        enqueue = None
        if champion is not None and config.refresh.warm_start:
            study = json.loads(Path(client.download_artifacts(
                champ_run.info.run_id, "optuna/study.json")).read_text())
            enqueue = study.get("best_params")
        log(f"training a challenger ({config.training.n_trials} trials"
            + (", warm-started from the champion" if enqueue else "") + ") ...")
        tags = {"fraudlab.refresh_key": _key(as_of)}
        result = train_model(dataset, config, dataset_path=path, register=False, tags=tags,
                             callbacks=callbacks, enqueue=enqueue)
        challenger = result.model.scorer()
        test = _frame_of(dataset, result.protocol.test.meta["tx_id"])
        log("comparing with the champion on the newest matured window, measuring drift ...")
        chall_m, chall_t = _window_scores(challenger, test)
        champ_m = None
        if champion is not None:
            champ_m, champ_t = _window_scores(champion, test)
        promote, reasons = _decide(config, champ_m, chall_m)

        # What changed since the champion's training period (its era up to its test window).
        ref_end = (pd.Timestamp(champ_run.data.tags["fraudlab.test_start"]) if champ_run
                   else result.protocol.times["test_start"])
        newest = dataset["ts"].max() - parse_duration(config.training.test_window)
        changes = compare_periods(
            dataset[dataset["ts"] < ref_end], dataset[dataset["ts"] >= newest], test,
            model=champion or challenger, challenger=challenger,
            champion_tiers=champ_t if champion is not None else None, challenger_tiers=chall_t)
        patterns = changes.patterns
        status = "first champion" if champion is None else ("promoted" if promote else "kept")
        log(f"decision: {status}; " + "; ".join(reasons))

        report_path = config.path(config.paths.reports) / f"refresh-{stamp}.html"
        # The report scores exactly the rows the decision was made on.
        ev = evaluate(test, challenger, challenger.spec["tiers"], config=config.evaluation,
                      champion=champion, history=dataset,
                      summary={"refresh as of": str(as_of), "decision": status,
                               "reasons": " / ".join(reasons),
                               "champion": f"version {champ_mv.version}" if champ_mv else "none",
                               "challenger run": result.run_id,
                               "dataset": str(path), "fingerprint": result.fingerprint[:16]},
                      title=f"Refresh as of {as_of:%Y-%m-%d %H:%M}: challenger vs champion")
        ev.sections["What changed"] = changes.to_html()
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(render_report(ev), encoding="utf-8")

        outcome = RefreshOutcome(
            as_of=str(as_of), status=status, reasons=reasons,
            champion_version=str(champ_mv.version) if champ_mv else None, challenger_version=None,
            metrics={"challenger": chall_m, "champion": champ_m}, drift=changes.summary(),
            patterns=patterns, report=str(report_path))
        with mlflow.start_run(run_name=f"refresh as of {as_of:%Y-%m-%d %H:%M}",
                              tags={"fraudlab.kind": "refresh", **tags}) as run:
            outcome.run_id = run.info.run_id
            mlflow.log_metrics({f"challenger.{k}": v for k, v in chall_m.items() if np.isfinite(v)})
            if champ_m:
                mlflow.log_metrics({f"champion.{k}": v for k, v in champ_m.items() if np.isfinite(v)})
            mlflow.log_metric("drift.score_psi", changes.score_psi)
            mlflow.log_table(changes.drift, "refresh/feature_drift.json")
            mlflow.log_table(changes.fraud_drift, "refresh/fraud_drift.json")
            mlflow.log_artifact(str(report_path), "reports")
            # Only now, with everything logged, touch the registry.
            version = register(result.model_uri, config, tags={
                **tags, "fraudlab.run_id": result.run_id, **model_tags(result)})
            outcome.challenger_version = version
            if promote and champion is not None:
                client.set_registered_model_alias(name, CHAMPION, version)
            mlflow.log_dict(outcome.to_dict(), "refresh/decision.json")
            mlflow.set_tags({"fraudlab.decision": status, "fraudlab.reasons": " / ".join(reasons)[:4000],
                             "fraudlab.challenger_version": version,
                             "fraudlab.champion_version": outcome.champion_version or ""})
            audit = config.path(config.refresh.audit_log)
            audit.parent.mkdir(parents=True, exist_ok=True)
            with open(audit, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"time": pd.Timestamp.now(tz="UTC").isoformat(), "as_of": str(as_of),
                                     "decision": status, "champion_before": outcome.champion_version,
                                     "challenger": version, "run_id": run.info.run_id,
                                     "reasons": reasons,
                                     "challenger_ap": chall_m["average_precision_score"],
                                     "champion_ap": champ_m["average_precision_score"] if champ_m else None},
                                    default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            mlflow.set_tag("fraudlab.refresh_complete", "true")
        return outcome
