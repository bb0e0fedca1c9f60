"""A whole training: tuned model, baseline, calibration, MLflow run and registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fraudlab.training import train_model


@pytest.fixture(scope="module")
def trained(labeled_dataset, tmp_path_factory):
    from fraudlab.training import load_config

    root = tmp_path_factory.mktemp("train")
    config = load_config(None, paths={"root": str(root)}, training={
        "n_trials": 3, "n_splits": 2, "validation_window": "14d", "gap": "7d", "max_rounds": 60,
        "early_stopping_rounds": 10, "report_every": 10})
    path = root / "dataset.parquet"
    labeled_dataset.to_parquet(path)
    first = train_model(labeled_dataset, config, dataset_path=path)
    second = train_model(labeled_dataset, config, dataset_path=path)
    return config, first, second, path


def test_first_version_is_champion_and_later_ones_challengers(trained):
    import mlflow

    config, first, second, _ = trained
    client = mlflow.MlflowClient(config.tracking_uri())
    name = config.tracking.registered_model
    assert (first.version, second.version) == ("1", "2")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"


def test_run_holds_lineage_metrics_trials_and_plots(trained, labeled_dataset):
    import mlflow

    config, first, _, path = trained
    client = mlflow.MlflowClient(config.tracking_uri())
    run = client.get_run(first.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["fraudlab.catalog_version"] == labeled_dataset.attrs["catalog_version"]
    assert tags["fraudlab.dataset_fingerprint"] == first.fingerprint
    # The checkout's commit, exactly (a checkout without git records no commit).
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                          capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert tags["fraudlab.git_commit"].removesuffix("+dirty").startswith(expected)
    assert head.returncode != 0 or len(tags["fraudlab.git_commit"].removesuffix("+dirty")) == 40
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    settings = json.loads(Path(client.download_artifacts(first.run_id, "config.json",
                                                         str(path.parent))).read_text())
    assert settings["features"]["label_maturity"] == config.features.label_maturity
    assert set(settings) == {"sources", "features", "contracts", "evaluation"}
    assert run.data.params["evaluation.review_capacity_per_day"] == str(
        config.evaluation.review_capacity_per_day)
    assert metrics["test.average_precision_score"] == pytest.approx(
        first.model.test_metrics["average_precision_score"])
    assert "baseline.test.average_precision_score" in metrics
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.source and str(path) in inputs[0].dataset.source
    input_tags = {t.key: t.value for t in inputs[0].tags}
    assert input_tags["frauds"] == str(int(labeled_dataset["is_fraud"].sum()))
    # The schema is inferred from a few rows, and is the whole lineage frame's, missing
    # values ("required") included; the profile counts every row.
    from fraudlab.features import LABEL, METADATA

    lineage = labeled_dataset[[c for c in (*METADATA, LABEL) if c in labeled_dataset.columns]]
    whole = mlflow.data.from_pandas(lineage, targets=LABEL).schema.to_dict()
    logged = json.loads(inputs[0].dataset.schema)["mlflow_colspec"]
    assert logged == whole and any(not c.get("required", True) for c in logged)
    assert json.loads(inputs[0].dataset.profile)["num_rows"] == len(labeled_dataset)
    files = {f.path for f in client.list_artifacts(first.run_id, "optuna")}
    assert {"optuna/trials.json", "optuna/study.json", "optuna/optimization_history.png"} <= files
    local = client.download_artifacts(first.run_id, "optuna/trials.json")
    trials = json.loads(Path(local).read_text())
    assert len(trials["data"]) == 3
    assert "contracts/dataset.json" in {f.path for f in client.list_artifacts(first.run_id, "contracts")}


def test_champion_loads_in_a_clean_process_and_returns_probabilities(trained, labeled_dataset):
    config, first, _, path = trained
    code = (
        "import sys, mlflow, pandas as pd, numpy as np\n"
        f"mlflow.set_tracking_uri({config.tracking_uri()!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{config.tracking.registered_model}@champion')\n"
        f"p = m.predict(pd.read_parquet({str(path)!r}).tail(500))\n"
        "np.save(sys.argv[1], np.asarray(p))\n")
    out = path.parent / "pred.npy"
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env,
                          timeout=300, capture_output=True, text=True)
    # The dataset scores as it is: its metadata columns are declared, not "extra inputs".
    assert "extra inputs" not in done.stderr, done.stderr
    served = np.load(out)
    local = first.model.scorer().predict(None, labeled_dataset.tail(500))
    np.testing.assert_allclose(served, local, rtol=1e-6)
    assert ((served >= 0) & (served <= 1)).all()


def test_calibration_matches_the_fraud_rate_of_its_window_and_keeps_the_ranking(
        trained, labeled_dataset):
    from fraudlab.training import build_protocol

    config, first, _, _ = trained
    cal = build_protocol(labeled_dataset, config.training).calibration
    scorer = first.model.scorer()
    margin = scorer.booster.inplace_predict(cal.X, predict_type="margin")
    from fraudlab.training._served import calibrate

    proba = calibrate(first.model.spec["calibration"], margin)
    # Platt scaling fits an intercept: predicted frauds equal observed frauds on its window.
    assert proba.sum() == pytest.approx(cal.y.sum(), rel=0.05)
    assert np.all(np.diff(proba[np.argsort(margin)]) >= 0)  # monotone: ranking kept
    rel = first.model.reliability  # on the test window, logged with the run
    assert rel["rows"].sum() == first.model.test_metrics["rows"]
    assert rel["observed"].iloc[-1] > 5 * rel["observed"].iloc[:-1].mean()


def test_tuned_and_baseline_are_measured_on_the_same_test_rows(trained):
    _, first, _, _ = trained
    m, b = first.model.test_metrics, first.baseline.test_metrics
    assert m["rows"] == b["rows"] and m["frauds"] == b["frauds"] > 0
    assert 0 < m["average_precision_score"] <= 1 and 0 < b["average_precision_score"] <= 1


def test_report_command_writes_the_html_and_logs_it_to_the_models_run(trained, tmp_path):
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from fraudlab.training._cli import app

    config, _, second, path = trained
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {"root": config.paths.root}}))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--dataset", str(path), "--out", str(out),
                                      "--model", "fraudlab-fraud/2", "-c", str(cfg)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "fraudlab-fraud version 2" in html and "current champion" in html  # v1 compared
    client = mlflow.MlflowClient(config.tracking_uri())
    # The same population as the run's test window, so the same figures.
    run_ap = client.get_run(second.run_id).data.metrics["test.average_precision_score"]
    assert f"<td>Average precision (PR-AUC)</td><td class=\"n\">{run_ap:.4f}</td>" in html
    logged = {f.path for f in client.list_artifacts(second.run_id, "reports")}
    assert logged == {"reports/report.html"}


def test_a_model_whose_code_file_changed_is_refused(trained, tmp_path):
    import mlflow

    from fraudlab.training import UntrustedModel, load_registered
    from fraudlab.training._registry import CODE_TAG, served_code_sha256

    config, first, _, _ = trained
    client = mlflow.MlflowClient(config.tracking_uri())
    name = config.tracking.registered_model
    mv = client.get_model_version(name, first.version)
    assert mv.tags[CODE_TAG] == served_code_sha256()
    scorer, _, _ = load_registered(config, f"{name}/{first.version}")  # untouched: loads
    # Someone with write access to the artifact store appends code to the model's file.
    code = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{first.version}",
                                                    dst_path=str(tmp_path))) / "_served.py"
    stored = Path(client.get_model_version_download_uri(name, first.version).removeprefix("file://"))
    target = stored / "_served.py"
    original = target.read_bytes()
    assert original == code.read_bytes()
    marker = tmp_path / "ran"
    target.write_bytes(original + f"\nopen({str(marker)!r}, 'w').close()\n".encode())
    try:
        with pytest.raises(UntrustedModel, match="code file changed since it was logged"):
            load_registered(config, f"{name}/{first.version}")
        assert not marker.exists()  # refused before anything of it ran
    finally:
        target.write_bytes(original)


def test_the_registered_model_carries_its_feature_declarations(trained, labeled_dataset):
    """features.json holds the declarations and settings of exactly the model's inputs;
    the features it declares recompute the dataset's values from the raw rows."""
    from fraudlab.features import features_from_dict
    from fraudlab.features._declarations import features_hash
    from fraudlab.training import load_registered

    config, first, _, _ = trained
    scorer, _, _ = load_registered(config, f"{config.tracking.registered_model}/{first.version}")
    doc = scorer.declarations
    assert doc["format"] == 1 and set(doc["settings"]) >= {"small_amount", "night_end_hour"}
    fs = features_from_dict({k: v for k, v in doc.items() if k != "settings"})
    assert fs.names() == scorer.features
    # The version is the hash of that content: declarations and settings.
    assert scorer.spec["features_version"] == labeled_dataset.attrs["catalog_version"] \
        == features_hash(fs, doc["settings"])


def test_the_model_requires_the_packages_this_environment_has(trained):
    """Its pip requirements name installed distributions at their installed versions, so
    loading it does not warn of mismatches (the CPU-only wheel is xgboost-cpu)."""
    from importlib.metadata import version

    import mlflow

    config, first, _, _ = trained
    mlflow.set_tracking_uri(config.tracking_uri())
    reqs = Path(mlflow.pyfunc.get_model_dependencies(
        f"models:/{config.tracking.registered_model}/{first.version}")).read_text().split()
    pins = dict(r.split("==") for r in reqs if "==" in r)
    assert {"mlflow", "numpy", "pandas"} <= set(pins)
    assert {"xgboost", "xgboost-cpu"} & set(pins)
    for dist, pinned in pins.items():
        assert version(dist) == pinned, dist
