"""A refresh killed with SIGKILL at any step, then run again, ends exactly as one refresh
that was never interrupted: the same registry, aliases, MLflow runs (none left RUNNING),
Optuna study and audit log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

AS_OF = "2026-03-20"
FAST = {"n_trials": 2, "n_splits": 1, "validation_window": "14d", "calibration_window": "7d",
        "test_window": "14d", "gap": "7d", "max_rounds": 30, "early_stopping_rounds": 10,
        "report_every": 10, "storage": "sqlite"}
# Each place a refresh can die, in the order it reaches them: before its decision is
# logged (the attempt is abandoned and the period starts over) and after it (the next
# refresh finishes it).
BEFORE_DECISION = ["store", "search", "training-run"]
AFTER_DECISION = ["registered", "audit", "aliases"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import write_tables

    raw = tmp_path_factory.mktemp("crash-world") / "raw"
    w = simulate_world(SimulationConfig(accounts=2000, days=80, seed=3, history_days=30))
    write_tables(w.tables(), raw, w.manifest)
    return raw


def _project(root, raw):
    import yaml

    shutil.copytree(raw, root / "raw")
    (root / "fraudlab.yaml").write_text(yaml.safe_dump({
        "paths": {"raw": "raw"}, "training": FAST, "features": {"label_maturity": "7d"},
        "refresh": {"lock_timeout": 60}}))
    return root


def _refresh(root, failpoint=None):
    env = {k: v for k, v in os.environ.items() if k != "FRAUDLAB_FAILPOINT"}
    env.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", COLUMNS="200")
    if failpoint:
        env["FRAUDLAB_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "fraudlab", "refresh", "--as-of", AS_OF,
                           "-c", str(root / "fraudlab.yaml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)


def _state(root) -> dict:
    """Everything a refresh leaves behind, without what differs between any two runs
    (run ids, times, durations)."""
    import mlflow
    import optuna

    from fraudlab.training import load_config

    config = load_config(root / "fraudlab.yaml")
    client = mlflow.MlflowClient(config.tracking_uri())
    exp = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    names = {r.info.run_id: r.info.run_name for r in runs}
    keep = ("fraudlab.kind", "fraudlab.refresh_key", "fraudlab.refresh_state",
            "fraudlab.decision", "fraudlab.refresh_complete", "fraudlab.challenger_version",
            "fraudlab.champion_version", "fraudlab.dataset_fingerprint")
    name = config.tracking.registered_model
    versions = client.search_model_versions(f"name = '{name}'")
    storage = optuna.storages.RDBStorage(f"sqlite:///{config.path(config.paths.mlruns) / 'optuna.db'}")
    studies = []
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        studies.append((s.study_name, [(t.state.name, t.params, t.value) for t in study.trials]))
    audit = [{k: v for k, v in json.loads(line).items() if k not in ("time", "run_id")}
             for line in config.path(config.refresh.audit_log).read_text().splitlines()]
    return {
        "runs": sorted((r.info.run_name, r.info.status,
                        tuple((k, r.data.tags.get(k)) for k in keep)) for r in runs),
        "versions": sorted((v.version, tuple(sorted(v.aliases)), names.get(v.run_id),
                            v.tags.get("fraudlab.refresh_key")) for v in versions),
        "aliases": {a: client.get_model_version_by_alias(name, a).version
                    for a in ("champion", "challenger")},
        "studies": sorted(studies),
        "audit": audit,
    }


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    root = _project(tmp_path_factory.mktemp("uninterrupted"), world)
    done = _refresh(root)
    assert done.returncode == 0, done.stdout + done.stderr
    return _state(root)


def _same_as_uninterrupted(root, uninterrupted) -> None:
    state = _state(root)
    assert all(status != "RUNNING" for _, status, _ in state["runs"])
    assert state == uninterrupted


@pytest.mark.slow
@pytest.mark.parametrize("point", BEFORE_DECISION)
def test_a_refresh_killed_before_its_decision_starts_over(point, world, tmp_path, uninterrupted):
    root = _project(tmp_path, world)
    killed = _refresh(root, failpoint=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    again = _refresh(root)
    assert again.returncode == 0, again.stdout + again.stderr
    _same_as_uninterrupted(root, uninterrupted)


@pytest.mark.slow
def test_a_refresh_killed_after_its_decision_is_finished_by_the_next(world, tmp_path,
                                                                      uninterrupted):
    """Killed at each place after the decision in turn (each run dies a step further on),
    then run once more: the state is that of an uninterrupted refresh, and a further run
    changes nothing."""
    root = _project(tmp_path, world)
    for point in AFTER_DECISION:
        killed = _refresh(root, failpoint=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stdout + killed.stderr)
    assert "decided by a process that died" in killed.stdout
    again = _refresh(root)
    assert again.returncode == 0, again.stdout + again.stderr
    _same_as_uninterrupted(root, uninterrupted)
    third = _refresh(root)
    assert third.returncode == 0 and "already completed" in third.stdout, third.stdout
    _same_as_uninterrupted(root, uninterrupted)


def test_an_uninterrupted_refresh_leaves_one_version_with_both_aliases(uninterrupted):
    assert {a: str(v) for a, v in uninterrupted["aliases"].items()} == {"champion": "1", "challenger": "1"}
    assert [str(v[0]) for v in uninterrupted["versions"]] == ["1"]
    assert [a["decision"] for a in uninterrupted["audit"]] == ["first champion"]
    assert [s[0] for s in uninterrupted["studies"]] == ["fraudlab-refresh-20260320T000000"]


# ------------------------------------------------------------------ the lock, shared or not


def _with_config(root, **sections):
    import yaml

    path = root / "fraudlab.yaml"
    cfg = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("shared", [False, True], ids=["file lock", "postgresql lock"])
def test_a_refresh_that_cannot_get_the_lock_exits_5_naming_the_holder(shared, world, tmp_path,
                                                                       request):
    import json as _json

    from fraudlab.training import load_config
    from fraudlab.training._lock import refresh_lock

    root = _project(tmp_path, world)
    sections = {"refresh": {"lock_timeout": 1}, "log_format": "json"}
    if shared:
        sections["tracking"] = {"uri": request.getfixturevalue("postgres_url")}
    config = load_config(_with_config(root, **sections))
    with refresh_lock(config, "2026-01-31", log=lambda m: None):
        result = _refresh(root)
    assert result.returncode == 5, result.stdout + result.stderr
    events = [_json.loads(line) for line in result.stdout.splitlines()]  # JSON lines only
    error = events[-1]
    assert error["event"] == "error" and error["exit_code"] == 5
    assert f"pid {os.getpid()}" in error["message"]
    assert "refresh as of 2026-01-31T00:00:00+00:00" in error["message"]


@pytest.mark.slow
def test_two_refreshes_on_a_postgresql_store_promote_once(world, tmp_path, postgres_url):
    root = _project(tmp_path, world)
    _with_config(root, tracking={"uri": postgres_url}, refresh={"lock_timeout": 600})
    env = {k: v for k, v in os.environ.items() if k != "FRAUDLAB_FAILPOINT"}
    env.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", COLUMNS="200")
    cmd = [sys.executable, "-m", "fraudlab", "refresh", "--as-of", AS_OF,
           "-c", str(root / "fraudlab.yaml")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=root) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("first champion as of" in o for o in outs) == 1, outs
    assert sum("already completed" in o for o in outs) == 1, outs
    waited = next(o for o in outs if "already completed" in o)
    assert "another refresh holds the advisory lock" in waited and "pid " in waited
    import mlflow

    client = mlflow.MlflowClient(postgres_url)
    versions = client.search_model_versions("name = 'fraudlab-fraud'")
    assert len(versions) == 1
    lines = (root / "reports" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["first champion"]
