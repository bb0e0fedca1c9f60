"""One refresh period: the platform's main job, composing every stage.

validate -> build -> train a challenger -> compare with the champion on the newest matured
window -> drift and new patterns -> report -> decide -> register -> audit -> move the
aliases. A refresh for an as-of time that already completed does nothing; a lock keeps two
refreshes from running at once; periods run in order.

Crash consistency. A refresh's MLflow run carries its state in the tag
``fraudlab.refresh_state``:

- ``computing``: validating, building, training, comparing, reporting. The registry is not
  touched; only this attempt's MLflow runs (tagged ``fraudlab.refresh_attempt``) and its
  period's Optuna study exist. An attempt found in this state by a later refresh died:
  its runs are ended as KILLED and deleted (MLflow's soft delete: restorable, not listed)
  and its study is deleted, so the period starts over from nothing.
- ``decided``: the decision and everything needed to carry it out are logged
  (``refresh/decision.json``). This is the commit point: from here every step is
  idempotent (register the version unless it exists, write the audit line unless it is
  there, move the aliases, mark complete), and the next refresh to take the lock finishes
  a decided refresh whose process died before completing it.
- complete: ``fraudlab.refresh_complete = true``, the run FINISHED.

A version is registered only for a decided refresh, and the aliases move only after its
audit line is written, so no alias ever points at a version of an abandoned attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data_contracts import json_safe, parse_duration, to_utc
from fraudlab.evaluation import compare_periods, evaluate, render_report, tier_threshold

from ._config import FraudlabConfig
from ._decision import decide, drift_warnings, rows_of, score_pair
from ._failpoint import failpoint
from ._lock import RefreshLocked, refresh_lock

__all__ = ["RefreshLocked", "RefreshOrderError", "RefreshOutcome", "refresh"]

COMPUTING, DECIDED = "computing", "decided"


class RefreshOrderError(Exception):
    """A refresh for a period older than the newest completed one, without ``backfill``."""


@dataclass
class RefreshOutcome:
    """What a refresh decided and why; also written to MLflow and the audit log."""

    as_of: str
    status: str  # "promoted", "kept", "first champion", "backfill", "already done"
    reasons: list[str]
    champion_version: str | None
    challenger_version: str | None
    metrics: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    patterns: list = field(default_factory=list)
    report: str | None = None
    run_id: str | None = None
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _key(as_of: pd.Timestamp) -> str:
    return as_of.isoformat()


def _refresh_runs(client, config: FraudlabConfig, where: str = "") -> list:
    exp = client.get_experiment_by_name(config.tracking.experiment)
    if exp is None:
        return []
    flt = "tags.`fraudlab.kind` = 'refresh'" + (f" and {where}" if where else "")
    return client.search_runs([exp.experiment_id], filter_string=flt, max_results=5000)


def find_completed(client, config: FraudlabConfig, as_of: pd.Timestamp) -> RefreshOutcome | None:
    """The outcome of a refresh already completed for this as-of time, if any."""
    runs = _refresh_runs(client, config, f"tags.`fraudlab.refresh_key` = '{_key(as_of)}' and "
                                         "tags.`fraudlab.refresh_complete` = 'true'")
    if not runs:
        return None
    path = client.download_artifacts(runs[0].info.run_id, "refresh/decision.json")
    data = json.loads(Path(path).read_text())
    outcome = RefreshOutcome(**{k: data[k] for k in RefreshOutcome.__dataclass_fields__
                                if k in data})
    outcome.status = "already done"
    return outcome


def newest_completed(client, config: FraudlabConfig) -> pd.Timestamp | None:
    """The as-of time of the newest completed refresh period (backfills aside)."""
    runs = _refresh_runs(client, config, "tags.`fraudlab.refresh_complete` = 'true'")
    keys = [pd.Timestamp(r.data.tags["fraudlab.refresh_key"]) for r in runs
            if r.data.tags.get("fraudlab.backfill") != "true"]
    return max(keys) if keys else None


def recover(client, config: FraudlabConfig, log: Callable[[str], None] = print) -> None:
    """Finish the decided refreshes whose process died; abandon every other dead attempt.

    Call it holding the refresh lock: then no other refresh of this store is alive, and
    every incomplete attempt is a dead one.
    """
    from mlflow.entities import ViewType

    exp = client.get_experiment_by_name(config.tracking.experiment)
    if exp is None:
        return
    runs = client.search_runs([exp.experiment_id],
                              filter_string="tags.`fraudlab.refresh_attempt` LIKE '%'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=5000)
    attempts: dict[str, list] = {}
    for r in runs:
        attempts.setdefault(r.data.tags["fraudlab.refresh_attempt"], []).append(r)
    for members in attempts.values():
        head = [r for r in members if r.data.tags.get("fraudlab.kind") == "refresh"]
        state = head[0].data.tags.get("fraudlab.refresh_state") if head else None
        if head and head[0].data.tags.get("fraudlab.refresh_complete") == "true":
            continue
        key = members[0].data.tags.get("fraudlab.refresh_key", "?")
        if state == DECIDED:
            log(f"finishing the refresh as of {key}, decided by a process that died "
                f"(run {head[0].info.run_id})")
            _commit(client, config, head[0].info.run_id, log)
            continue
        log(f"abandoning the refresh as of {key} left by a process that died "
            f"({len(members)} run(s) ended as KILLED and deleted)")
        for r in members:
            if r.info.status == "RUNNING":
                client.set_terminated(r.info.run_id, status="KILLED")
            client.delete_run(r.info.run_id)
        _drop_study(config, _study_name(config, pd.Timestamp(key)))


def _study_name(config: FraudlabConfig, as_of: pd.Timestamp) -> str:
    return f"{config.training.study_name or 'fraudlab'}-refresh-{as_of:%Y%m%dT%H%M%S}"


def _drop_study(config: FraudlabConfig, name: str) -> None:
    """Delete a dead attempt's Optuna study, if the storage keeps studies."""
    from ._study import storage_url

    url = storage_url(config)
    if url is None:
        return
    import optuna

    from ._study import _storage

    with contextlib.suppress(KeyError):  # no such study: nothing to drop
        optuna.delete_study(study_name=name, storage=_storage(url))


def refresh(config: FraudlabConfig, as_of, *, log: Callable[[str], None] = print,
            callbacks=(), backfill: bool = False) -> RefreshOutcome:
    """Run one refresh period as of ``as_of``.

    Parameters
    ----------
    config : FraudlabConfig
    as_of : timestamp
        The period's boundary: nothing later is used, labels included.
    log : callable
        Receives one line per step.
    callbacks : sequence of callables
        Optuna callbacks for the challenger's search (progress).
    backfill : bool
        Allow a period older than the newest completed one: it is computed, reported,
        logged and audited as ``backfill``, but registers nothing and moves no alias.

    Raises
    ------
    ContractFailure
        A contract failed: nothing was trained, registered or promoted.
    SourceError
        A source could not be read.
    RefreshLocked
        Another refresh kept the lock too long.
    RefreshOrderError
        ``as_of`` is older than the newest completed period and ``backfill`` is not set.
    """
    from ._registry import setup_mlflow

    as_of = to_utc(as_of)
    # The lock comes first: even creating a new tracking store must not race another refresh.
    with refresh_lock(config, as_of, log):
        client = setup_mlflow(config)
        recover(client, config, log)
        done = find_completed(client, config, as_of)
        if done:
            log(f"refresh as of {as_of} already completed (run {done.run_id}): nothing to do")
            return done
        newest = newest_completed(client, config)
        if newest is not None and as_of < newest and not backfill:
            raise RefreshOrderError(
                f"a refresh as of {as_of} is older than the newest completed period, as of "
                f"{newest}; periods run in order (pass --backfill to compute an older period "
                "without registering or moving any alias)")
        run_id = _compute(client, config, as_of, log=log, callbacks=callbacks,
                          backfill=backfill)
        return _commit(client, config, run_id, log)


def _compute(client, config: FraudlabConfig, as_of: pd.Timestamp, *, log, callbacks,
             backfill: bool) -> str:
    """Everything up to the decision; returns the refresh run, left in state ``decided``."""
    attempt = uuid.uuid4().hex
    tags = {"fraudlab.refresh_key": _key(as_of), "fraudlab.refresh_attempt": attempt}
    exp = client.get_experiment_by_name(config.tracking.experiment)
    run = client.create_run(exp.experiment_id, run_name=f"refresh as of {as_of:%Y-%m-%d %H:%M}",
                            tags={"fraudlab.kind": "refresh", "fraudlab.refresh_state": COMPUTING,
                                  "fraudlab.backfill": str(backfill).lower(), **tags})
    run_id = run.info.run_id
    try:
        return _decide_period(client, config, as_of, run_id, tags, log=log,
                              callbacks=callbacks, backfill=backfill)
    except BaseException:
        # Ended as FAILED now; the next refresh deletes it with the rest of the attempt.
        client.set_terminated(run_id, status="FAILED")
        raise


def _decide_period(client, config: FraudlabConfig, as_of: pd.Timestamp, run_id: str,
                   tags: dict, *, log, callbacks, backfill: bool) -> str:
    import mlflow

    from ._pipeline import build_and_save, build_and_save_dask, read_for_training
    from ._registry import CHAMPION, load_registered, model_tags
    from ._train import train_model

    stamp = f"{as_of:%Y%m%dT%H%M}"
    if config.refresh.engine == "dask":
        log("validating the raw data and building the labeled dataset on Dask ...")
        path = config.path("data/datasets") / f"refresh-{stamp}"
        build_and_save_dask(config, as_of, path)
        dataset = read_for_training(path, config.training)
        log(f"read {len(dataset):,} rows of {path} for training"
            + (f" (legitimate rows sampled at {config.training.negative_rate:g})"
               if config.training.negative_rate < 1 else ""))
    else:
        log("validating the raw data and building the labeled dataset ...")
        path = config.path("data/datasets") / f"refresh-{stamp}.parquet"
        dataset = build_and_save(config, as_of, path, log=log)
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
    study_name = _study_name(config, as_of)
    _drop_study(config, study_name)  # a dead attempt's, if any: the period starts over
    result = train_model(dataset, config, dataset_path=path, register=False, tags=tags,
                         callbacks=[*callbacks, lambda study, trial: failpoint("search")],
                         enqueue=enqueue, study_name=study_name)
    challenger = result.model.scorer()
    test = rows_of(dataset, result.protocol.test.meta["tx_id"])
    log("comparing with the champion on the newest matured window, measuring drift ...")
    pair = score_pair(config, result.protocol, dataset, challenger, champion)
    chall_m, chall_t, thresholds = pair.challenger, pair.challenger_tiers, pair.thresholds
    champ_m, comparison = pair.champion, pair.comparison

    # What changed since the champion's training period (its era up to its test window).
    ref_end = (pd.Timestamp(champ_run.data.tags["fraudlab.test_start"]) if champ_run
               else result.protocol.times["test_start"])
    newest = dataset["ts"].max() - parse_duration(config.training.test_window)
    changes = compare_periods(
        dataset[dataset["ts"] < ref_end], dataset[dataset["ts"] >= newest], test,
        model=champion or challenger, challenger=challenger,
        champion_tiers=pair.champion_deployed_tiers, challenger_tiers=chall_t)
    decision = decide(config.refresh, champ_m, chall_m, comparison,
                      review_capacity_per_day=config.evaluation.review_capacity_per_day)
    promote, reasons = decision.promote, decision.reasons
    warnings = drift_warnings(config.refresh, changes.summary())
    status = "first champion" if champion is None else ("promoted" if promote else "kept")
    rethreshold = None
    if status == "kept" and config.refresh.rethreshold_kept:
        rethreshold = _rethreshold(champion.spec["tiers"], thresholds["champion"])
        if rethreshold is not None:
            reasons.append(rethreshold.pop("reason"))
            rethreshold["version"] = str(champ_mv.version)
    if backfill:
        reasons.append(f"backfill: would have been '{status}'; nothing registered, no alias moved")
        status, rethreshold = "backfill", None
    log(f"decision: {status}; " + "; ".join(reasons))
    for w in warnings:
        log(f"warning: {w}")

    report_path = config.path(config.paths.reports) / f"refresh-{stamp}.html"
    # The report scores exactly the rows the decision was made on.
    ev = evaluate(test, challenger, challenger.spec["tiers"], config=config.evaluation,
                  champion=champion, history=dataset,
                  summary={"refresh as of": str(as_of), "decision": status,
                           "reasons": " / ".join(reasons),
                           "warnings": " / ".join(warnings) or "none",
                           "champion": f"version {champ_mv.version}" if champ_mv else "none",
                           "challenger run": result.run_id,
                           "dataset": str(path), "fingerprint": result.fingerprint[:16]},
                  title=f"Refresh as of {as_of:%Y-%m-%d %H:%M}: challenger vs champion")
    ev.sections["What changed"] = changes.to_html()
    ev.warnings.extend(w[0].upper() + w[1:] + "." for w in warnings)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = report_path.with_name(f".{report_path.name}.tmp")
    tmp.write_text(render_report(ev), encoding="utf-8")
    os.replace(tmp, report_path)

    outcome = RefreshOutcome(
        as_of=str(as_of), status=status, reasons=reasons,
        champion_version=str(champ_mv.version) if champ_mv else None, challenger_version=None,
        metrics={"challenger": chall_m, "champion": champ_m,
                 "operating_point": comparison.to_dict() if comparison else None,
                 "thresholds": thresholds},
        drift=changes.summary(), patterns=changes.patterns, report=str(report_path),
        run_id=run_id, warnings=warnings)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"challenger.{k}": v for k, v in chall_m.items() if np.isfinite(v)})
        if champ_m:
            mlflow.log_metrics({f"champion.{k}": v for k, v in champ_m.items() if np.isfinite(v)})
        mlflow.log_metric("drift.score_psi", changes.score_psi)
        mlflow.log_table(changes.drift, "refresh/feature_drift.json")
        mlflow.log_table(changes.fraud_drift, "refresh/fraud_drift.json")
        mlflow.log_artifact(str(report_path), "reports")
        plan = {**outcome.to_dict(), "plan": {
            "promote": bool(promote and champion is not None and not backfill),
            "rethreshold": rethreshold,
            "register": not backfill, "model_uri": result.model_uri,
            "training_run_id": result.run_id,
            "version_tags": {**tags, "fraudlab.run_id": result.run_id, **model_tags(result)}}}
        mlflow.log_dict(json_safe(plan), "refresh/decision.json")
        # The commit point: from here the decision is carried out, by this process or, if
        # it dies, by the next refresh that takes the lock.
        mlflow.set_tag("fraudlab.refresh_state", DECIDED)
    return run_id


def _commit(client, config: FraudlabConfig, run_id: str, log) -> RefreshOutcome:
    """Carry out a decided refresh; each step is skipped when it was already done."""
    import mlflow

    from ._registry import CHALLENGER, CHAMPION, register

    data = json.loads(Path(client.download_artifacts(run_id, "refresh/decision.json")).read_text())
    plan = data.pop("plan")
    outcome = RefreshOutcome(**data)
    name = config.tracking.registered_model
    if plan["register"]:
        existing = client.search_model_versions(
            f"name = '{name}' and run_id = '{plan['training_run_id']}'")
        if existing:
            outcome.challenger_version = str(existing[0].version)
        else:
            outcome.challenger_version = register(plan["model_uri"], config,
                                                  tags=plan["version_tags"], aliases=False)
        failpoint("registered")
    _audit(config, outcome)
    if plan["register"]:
        version = outcome.challenger_version
        client.set_registered_model_alias(name, CHALLENGER, version)
        if plan["promote"] or outcome.status == "first champion":
            client.set_registered_model_alias(name, CHAMPION, version)
        failpoint("aliases")
    if plan.get("rethreshold"):
        from ._registry import TIER_TAGS

        new = plan["rethreshold"]
        for tier, tag in TIER_TAGS.items():
            client.set_model_version_tag(name, new["version"], tag,
                                         str(tier_threshold(new["tiers"][tier])))
        client.set_model_version_tag(name, new["version"], "fraudlab.tiers_from_run", run_id)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(json_safe(outcome.to_dict()), "refresh/decision.json")
        mlflow.set_tags({"fraudlab.decision": outcome.status,
                         "fraudlab.reasons": " / ".join(outcome.reasons)[:4000],
                         "fraudlab.challenger_version": outcome.challenger_version or "",
                         "fraudlab.champion_version": outcome.champion_version or "",
                         "fraudlab.refresh_complete": "true"})
    log(f"refresh as of {outcome.as_of} complete: {outcome.status}")
    return outcome


def _rethreshold(deployed: dict, chosen: dict) -> dict | None:
    """The kept champion's new thresholds and the sentence that says so, or None when the
    re-chosen ones are those it already runs at."""
    def show(v) -> str:
        v = tier_threshold(v)
        return "none (empty tier)" if not np.isfinite(v) else f"{v:.4f}"

    if all(tier_threshold(deployed[k]) == tier_threshold(chosen[k]) for k in ("block", "review")):
        return None
    return {"tiers": {k: tier_threshold(chosen[k]) for k in ("block", "review")},
            "reason": "the champion stays at the thresholds it was compared at, re-chosen on "
                      f"the newest calibration window: block {show(deployed['block'])} -> "
                      f"{show(chosen['block'])}, review {show(deployed['review'])} -> "
                      f"{show(chosen['review'])}"}


def _audit(config: FraudlabConfig, outcome: RefreshOutcome) -> None:
    """Append the period's line to the audit log, once: a line for this run is not repeated.

    A line cut short by a crash (no newline at the end of the file) was never complete and
    is dropped before appending; every complete line is kept as it was.
    """
    audit = config.path(config.refresh.audit_log)
    audit.parent.mkdir(parents=True, exist_ok=True)
    lines = audit.read_bytes() if audit.exists() else b""
    if lines and not lines.endswith(b"\n"):
        lines = lines[:lines.rfind(b"\n") + 1]
        with open(audit, "r+b") as fh:
            fh.truncate(len(lines))
    for line in lines.splitlines():
        if json.loads(line).get("run_id") == outcome.run_id:
            return
    m = outcome.metrics
    entry = {"time": pd.Timestamp.now(tz="UTC").isoformat(), "as_of": outcome.as_of,
             "decision": outcome.status, "champion_before": outcome.champion_version,
             "challenger": outcome.challenger_version, "run_id": outcome.run_id,
             "reasons": outcome.reasons, "warnings": outcome.warnings,
             "challenger_ap": m["challenger"]["average_precision_score"],
             "champion_ap": (m["champion"] or {}).get("average_precision_score")}
    data = (json.dumps(json_safe(entry), allow_nan=False) + "\n").encode()
    with open(audit, "ab") as fh:
        half = len(data) // 2
        fh.write(data[:half])
        fh.flush()
        failpoint("audit")  # a crash mid-line, as a power cut during the write would leave
        fh.write(data[half:])
        fh.flush()
        os.fsync(fh.fileno())
