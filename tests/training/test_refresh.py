"""The refresh cycle: decisions against recomputed metrics, idempotency, locking, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

AS_OF_1 = "2026-05-15"
AS_OF_2 = "2026-05-16"

FAST = {"n_trials": 2, "n_splits": 2, "validation_window": "14d", "gap": "7d", "max_rounds": 40,
        "early_stopping_rounds": 10, "report_every": 10, "storage": "sqlite"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder with the 3,000-account world as raw files and a fast config."""
    import yaml

    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import write_tables

    root = tmp_path_factory.mktemp("project")
    world = simulate_world(SimulationConfig(accounts=3000, days=85, seed=11, history_days=30))
    write_tables(world.tables(), root / "raw", world.manifest)
    cfg = root / "fraudlab.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {"raw": "raw"}, "training": FAST,
                                   "refresh": {"lock_timeout": 600}}))
    return root, cfg


def _config(cfg_path):
    from fraudlab.training import load_config

    return load_config(cfg_path)


def _versions(config):
    import mlflow

    client = mlflow.MlflowClient(config.tracking_uri())
    try:
        return client.search_model_versions(f"name='{config.tracking.registered_model}'")
    except mlflow.exceptions.MlflowException:
        return []


@pytest.fixture(scope="module")
def refreshed(project):
    from fraudlab.training import refresh

    root, cfg_path = project
    config = _config(cfg_path)
    first = refresh(config, AS_OF_1, log=lambda m: None)
    second = refresh(config, AS_OF_2, log=lambda m: None)
    return config, first, second


def test_first_refresh_makes_the_first_champion_and_writes_everything(refreshed):
    config, first, _ = refreshed
    assert first.status == "first champion" and first.challenger_version == "1"
    assert os.path.exists(first.report)
    lines = config.path(config.refresh.audit_log).read_text().splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["first champion", refreshed[2].status]


def test_decision_matches_metrics_recomputed_from_the_registry(refreshed):
    import mlflow

    from fraudlab.evaluation import average_precision_score

    config, _, second = refreshed
    mlflow.set_tracking_uri(config.tracking_uri())
    name = config.tracking.registered_model
    run = mlflow.MlflowClient().get_run(second.run_id)
    assert run.data.tags["fraudlab.decision"] == second.status
    ds = pd.read_parquet(config.path("data/datasets") / "refresh-20260516T0000.parquet")
    client = mlflow.MlflowClient()
    challenger_run = client.get_run(client.get_model_version(name, second.challenger_version).run_id)
    test_start = pd.Timestamp(challenger_run.data.tags["fraudlab.test_start"])
    protocol = json.loads(mlflow.artifacts.load_text(
        f"runs:/{challenger_run.info.run_id}/protocol.json"))
    test_end = pd.Timestamp(protocol["times"]["test_end"])
    window = ds[(ds["ts"] >= test_start) & (ds["ts"] < test_end) & ds["is_mature"]]
    known = set(ds.loc[(ds["is_fraud"] == 1) & (ds["label_reported_at"] < test_start), "account_id"])
    window = window[~window["account_id"].isin(known)]
    from fraudlab.evaluation import OperatingComparison, operating_counts, tier_of
    from fraudlab.training._decision import decide

    ap = {}
    thresholds, op = second.metrics["thresholds"], second.metrics["operating_point"]
    for who, version in (("champion", second.champion_version), ("challenger", second.challenger_version)):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        p = model.predict(window)
        ap[who] = average_precision_score(window["is_fraud"], p)
        assert ap[who] == pytest.approx(second.metrics[who]["average_precision_score"], rel=1e-6)
        # Each model's tiers from its recorded thresholds, recounted on the window.
        counts = operating_counts(window["is_fraud"], tier_of(p, thresholds[who]), window["amount"])
        assert counts == pytest.approx(op[who])
    decision = decide(config.refresh, second.metrics["champion"], second.metrics["challenger"],
                      OperatingComparison.from_dict(op),
                      review_capacity_per_day=config.evaluation.review_capacity_per_day)
    # A kept champion's new thresholds are the one reason the rule does not give.
    assert decision.reasons == [r for r in second.reasons if "re-chosen on the newest" not in r]
    should_promote = decision.promote
    assert second.status == ("promoted" if should_promote else "kept")
    champion = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    assert str(champion.version) == (second.challenger_version if should_promote else "1")
    challenger = mlflow.MlflowClient().get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == second.challenger_version


def test_the_same_as_of_twice_creates_nothing_new(refreshed):
    from fraudlab.training import refresh

    config, first, _ = refreshed
    before = len(_versions(config))
    again = refresh(config, AS_OF_1, log=lambda m: None)
    assert again.status == "already done" and again.challenger_version == first.challenger_version
    assert len(_versions(config)) == before


def test_a_failed_step_leaves_the_registry_as_it_was(refreshed, monkeypatch):
    from fraudlab.training import _refresh, refresh

    config, _, _ = refreshed
    before = {(v.version, tuple(v.aliases)) for v in _versions(config)}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while writing the report")

    monkeypatch.setattr(_refresh, "render_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        refresh(config, "2026-05-17", log=lambda m: None)
    assert {(v.version, tuple(v.aliases)) for v in _versions(config)} == before


def test_bad_raw_data_stops_before_anything_is_trained(project, tmp_path):
    import shutil

    from fraudlab.training import ContractFailure, refresh

    root, cfg_path = project
    bad = tmp_path / "bad"
    shutil.copytree(root / "raw", bad)
    tx = pd.read_parquet(bad / "transactions.parquet")
    tx.loc[:9, "amount"] = -5.0
    tx.to_parquet(bad / "transactions.parquet", index=False)
    config = _config(cfg_path).model_copy(deep=True)
    config.paths.raw = str(bad)
    config.paths.mlruns = str(tmp_path / "mlruns")
    with pytest.raises(ContractFailure, match="amount"):
        refresh(config, AS_OF_1, log=lambda m: None)
    assert not _versions(config)


@pytest.mark.slow
def test_two_refreshes_started_at_once_promote_once(project, tmp_path):
    import shutil

    root, cfg_path = project
    proj = tmp_path / "p"
    shutil.copytree(root / "raw", proj / "raw")
    shutil.copy(cfg_path, proj / "fraudlab.yaml")
    cmd = [sys.executable, "-m", "fraudlab", "refresh", "--as-of", AS_OF_1, "-c", str(proj / "fraudlab.yaml")]
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "COLUMNS": "200"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=proj) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    config = _config(proj / "fraudlab.yaml")
    assert len(_versions(config)) == 1  # one training registered, not two
    assert sum("first champion" in o for o in outs) == 1
    assert sum("already completed" in o for o in outs) == 1
    lines = config.path(config.refresh.audit_log).read_text().splitlines()
    assert len(lines) == 1
    assert np.isfinite(json.loads(lines[0])["challenger_ap"])


def test_refresh_cli_exits_3_on_a_failed_contract_and_logs_json_lines(project, tmp_path):
    import shutil

    import yaml
    from typer.testing import CliRunner

    from fraudlab.training._cli import EXIT_CONTRACT, app

    root, _ = project
    bad = tmp_path / "raw"
    shutil.copytree(root / "raw", bad)
    labels = pd.read_parquet(bad / "labels.parquet")
    labels.loc[:2, "tx_id"] = "T-UNKNOWN"  # labels for transactions that do not exist
    labels.to_parquet(bad / "labels.parquet", index=False)
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {"raw": "raw"}, "training": FAST, "log_format": "json"}))
    result = CliRunner().invoke(app, ["refresh", "--as-of", AS_OF_1, "-c", str(cfg)],
                                terminal_width=200)
    assert result.exit_code == EXIT_CONTRACT, result.output
    # stdout holds JSON lines and nothing else; people read the tables on stderr.
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and events[0]["event"] == "progress"
    error = events[-1]
    assert (error["event"], error["exit_code"]) == ("error", EXIT_CONTRACT)
    assert "nothing registered" in error["message"] and error["quarantined_rows"] == 3
    assert any("labels.parquet: column tx_id: 3 row(s) fail" in f for f in error["failures"])
    assert "FAIL" in result.stderr
    assert not _versions(_config(cfg))


def test_json_lines_write_missing_numbers_as_null(capsys):
    from fraudlab.training._cli import _json_log

    _json_log("decision", metrics={"block_precision": float("nan"), "ap": 0.5},
              when=pd.NaT, count=np.int64(3))
    event = json.loads(capsys.readouterr().out)
    assert event["metrics"] == {"block_precision": None, "ap": 0.5}
    assert event["when"] is None and event["count"] == 3


def test_an_older_period_is_refused_and_a_backfill_moves_nothing(refreshed, tmp_path):
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from fraudlab.training import RefreshOrderError, refresh
    from fraudlab.training._cli import EXIT_USAGE, app

    config, first, second = refreshed
    name = config.tracking.registered_model
    before = {(v.version, tuple(sorted(v.aliases))) for v in _versions(config)}
    with pytest.raises(RefreshOrderError, match="newest completed period, as of 2026-05-16"):
        refresh(config, "2026-05-14", log=lambda m: None)
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    result = CliRunner().invoke(app, ["refresh", "--as-of", "2026-05-14", "-c", str(cfg)],
                                terminal_width=200)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--backfill" in result.output
    lines = config.path(config.refresh.audit_log).read_text().splitlines()
    back = refresh(config, "2026-05-14", log=lambda m: None, backfill=True)
    assert back.status == "backfill" and back.challenger_version is None
    assert {(v.version, tuple(sorted(v.aliases))) for v in _versions(config)} == before
    client = mlflow.MlflowClient(config.tracking_uri())
    assert str(client.get_model_version_by_alias(name, "challenger").version) == \
        second.challenger_version
    after = config.path(config.refresh.audit_log).read_text().splitlines()
    assert len(after) == len(lines) + 1 and json.loads(after[-1])["decision"] == "backfill"


def test_a_kept_champion_runs_at_the_thresholds_it_was_compared_at(refreshed):
    import mlflow

    from fraudlab.training import load_registered, refresh, version_tiers

    config, _, _ = refreshed
    # A gain no challenger can show: the champion is kept, whatever the data.
    strict = config.model_copy(deep=True)
    strict.refresh.rule, strict.refresh.min_gain = "operating_point", 1e12
    name = config.tracking.registered_model
    client = mlflow.MlflowClient(config.tracking_uri())
    version = client.get_model_version_by_alias(name, "champion").version

    def deploy_stale() -> None:  # thresholds chosen long ago, on other data
        client.set_model_version_tag(name, version, "fraudlab.tier.block", "0.99")
        client.set_model_version_tag(name, version, "fraudlab.tier.review", "0.5")

    deploy_stale()
    out = refresh(strict, "2026-05-18", log=lambda m: None)
    assert out.status == "kept"
    # The outcome is JSON: an empty tier's threshold (inf) is null there.
    chosen = {k: float("inf") if v is None else v
              for k, v in out.metrics["thresholds"]["champion"].items()}
    after = client.get_model_version_by_alias(name, "champion")
    assert after.version == version
    assert version_tiers(after) == pytest.approx(chosen) != {"block": 0.99, "review": 0.5}
    assert after.tags["fraudlab.tiers_from_run"] == out.run_id
    assert any(f"review 0.5000 -> {chosen['review']:.4f}" in r for r in out.reasons)
    model, _, _ = load_registered(strict, f"{name}@champion")
    assert {k: model.spec["tiers"][k] for k in chosen} == pytest.approx(chosen)
    # With the setting off, a kept champion's thresholds stay as they are.
    deploy_stale()
    off = strict.model_copy(deep=True)
    off.refresh.rethreshold_kept = False
    again = refresh(off, "2026-05-19", log=lambda m: None)
    assert again.status == "kept"
    assert version_tiers(client.get_model_version_by_alias(name, "champion")) == \
        {"block": 0.99, "review": 0.5}
    assert not any("re-chosen on the newest" in r for r in again.reasons)
