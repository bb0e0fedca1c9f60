import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlab.training._cli import EXIT_CONTRACT, EXIT_SOURCE, EXIT_USAGE, app

runner = CliRunner()


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "fraudlab", "--help"], capture_output=True,
                            text=True, check=True)
    for command in ("simulate", "contracts", "config"):
        assert command in result.stdout


def test_help_does_not_import_the_heavy_stack():
    code = ("import sys; from fraudlab.training._cli import app; "
            "print(sorted(m for m in ('pandas', 'great_expectations', 'mlflow', 'shap', 'xgboost')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_show_prints_effective_yaml(tmp_path):
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text("simulation:\n  accounts: 321\nsources:\n  default_label_delay: 21d\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "accounts: 321" in result.output
    assert "default_label_delay: 21d" in result.output
    assert "# Number of regular customer accounts." in result.output


def test_config_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text("simulation:\n  acounts: 321\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "acounts" in result.output


def test_simulate_then_check(tmp_path):
    out = tmp_path / "w"
    args = ["simulate", "--out", str(out), "--accounts", "120", "--days", "15", "--seed", "4",
            "--start", "2026-02-01", "--emerging-from", "2026-02-10"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["period"]["emerging_from"].startswith("2026-02-10")
    assert manifest["config"]["seed"] == 4
    reports = tmp_path / "r"
    result = runner.invoke(app, ["contracts", "check", "--raw", str(out), "--as-of", "2027-01-01",
                                 "--report-dir", str(reports)])
    assert result.exit_code == 0, result.output
    assert "all contracts passed" in result.output
    assert json.loads((reports / "contracts.json").read_text())["success"] is True


def test_check_fails_with_file_column_and_count(tmp_path, world_dir):
    tx = pd.read_parquet(world_dir / "transactions.parquet")
    tx.loc[[1, 2], "amount"] = -7.0
    tx.to_parquet(world_dir / "transactions.parquet", index=False)
    reports = tmp_path / "r"
    result = runner.invoke(app, ["contracts", "check", "--raw", str(world_dir), "--as-of",
                                 "2027-01-01", "--report-dir", str(reports)],
                           terminal_width=200)
    assert result.exit_code == EXIT_CONTRACT
    assert "transactions.parquet" in result.output
    assert "amount >= 0" in result.output
    assert "[expect_column_values_to_be_between]" in result.output
    assert "2 row(s) quarantined" in result.output
    q = pd.read_parquet(reports / "quarantine.parquet")
    assert q["row"].tolist() == [1, 2]
    doc = json.loads((reports / "contracts.json").read_text())
    assert doc["success"] is False and doc["quarantined_rows"]["transactions"] == 2


def test_check_unreadable_file_exits_with_source_code(world_dir):
    (world_dir / "labels.parquet").write_bytes(b"\x00garbage")
    result = runner.invoke(app, ["contracts", "check", "--raw", str(world_dir)],
                           terminal_width=200)
    assert result.exit_code == EXIT_SOURCE
    assert "labels.parquet" in result.output and "cannot be read" in result.output


def test_features_list_prints_the_catalog():
    from fraudlab.features import CATALOG, catalog_markdown

    result = runner.invoke(app, ["features", "list", "--markdown"])
    assert result.exit_code == 0 and result.output == catalog_markdown()
    result = runner.invoke(app, ["features", "list", "--group", "blacklist"], terminal_width=300)
    assert result.exit_code == 0
    names = [f.name for f in CATALOG if f.group == "blacklist"]
    assert all(n in result.output for n in names)
    assert "tx_count_1h" not in result.output


def test_features_build_writes_dataset_and_contract(tmp_path, world_dir):
    out = tmp_path / "ds" / "train.parquet"
    result = runner.invoke(app, ["features", "build", "--raw", str(world_dir), "--as-of",
                                 "2026-02-15", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    ds = pd.read_parquet(out)
    assert (ds["ts"] < pd.Timestamp("2026-02-15", tz="UTC")).all()
    assert ds.attrs["catalog_version"]
    contract = json.loads(out.with_suffix(".contract.json").read_text())
    assert contract["raw"]["success"] is True and contract["dataset"]["success"] is True


def test_features_build_stops_on_bad_raw_data(tmp_path, world_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the contract report goes under the default root
    tx = pd.read_parquet(world_dir / "transactions.parquet")
    tx.loc[0, "channel"] = "fax"
    tx.to_parquet(world_dir / "transactions.parquet", index=False)
    out = tmp_path / "ds.parquet"
    result = runner.invoke(app, ["features", "build", "--raw", str(world_dir), "--as-of",
                                 "2026-02-15", "--out", str(out)], terminal_width=200)
    assert result.exit_code == EXIT_CONTRACT
    assert "nothing built" in result.output and not out.exists()


def test_train_refuses_workers_without_shared_storage(tmp_path):
    ds = tmp_path / "d.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(ds)
    result = runner.invoke(app, ["train", "--dataset", str(ds), "--workers", "2"])
    assert result.exit_code == EXIT_USAGE
    assert "shared" in result.output or "storage" in result.output


@pytest.mark.slow
def test_train_prints_tuned_against_baseline_and_registers(tmp_path, labeled_dataset, monkeypatch):
    ds = tmp_path / "d.parquet"
    labeled_dataset.to_parquet(ds)
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text("training: {n_trials: 2, n_splits: 2, validation_window: 14d, gap: 7d, "
                   "max_rounds: 40, early_stopping_rounds: 10, report_every: 10}\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--dataset", str(ds), "-c", str(cfg)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "baseline: XGBoost defaults" in result.output and "difference" in result.output
    assert "average_precision_score" in result.output
    assert "registered fraudlab-fraud version 1" in result.output
    assert (tmp_path / "mlruns" / "mlflow.db").exists()


FEATURES_FILE = """
columns:
  transactions:
    card_country: {kind: category, categories: [CN, SG, US]}
features:
  - name: country_tx_count_2d
    description: payments by this account from this card country in the last 2 days
    entity: account+card_country
    agg: count
    window: 2d
    include_current: true
  - name: big_amount_max_90m
    description: largest amount above the high-amount limit by this account in 90 minutes
    entity: account
    agg: max
    of: amount
    window: 90min
    where: amount > high_amount
    nullable: true
"""


def test_features_build_with_declared_features_and_extra_columns(tmp_path, world_dir):
    """A features file with an extra column and a composite entity, built through the CLI;
    values recomputed independently for sampled rows; undeclared columns named."""
    tx = pd.read_parquet(world_dir / "transactions.parquet")
    tx["card_country"] = ["CN", "SG", "US"] * (len(tx) // 3) + ["CN"] * (len(tx) % 3)
    tx["scratch"] = 1
    tx.to_parquet(world_dir / "transactions.parquet", index=False)
    (tmp_path / "mine.yaml").write_text(FEATURES_FILE)
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text(f"features:\n  definitions: [{tmp_path / 'mine.yaml'}]\n"
                   "  params: {high_amount: 500}\n  include: [velocity, user]\n")
    out = tmp_path / "ds.parquet"
    result = runner.invoke(app, ["features", "build", "--raw", str(world_dir), "--as-of",
                                 "2026-02-15", "--out", str(out), "-c", str(cfg)],
                           terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "scratch left out" in " ".join(result.output.split())
    ds = pd.read_parquet(out)
    assert {"country_tx_count_2d", "big_amount_max_90m", "tx_count_1h"} <= set(ds.columns)
    assert "blacklist_device_hit" not in ds.columns
    hist = tx[tx["ts"] < pd.Timestamp("2026-02-15", tz="UTC")].set_index("tx_id")
    for tx_id in ds["tx_id"].sample(25, random_state=0):
        row, me = ds.set_index("tx_id").loc[tx_id], hist.loc[tx_id]
        mine = hist[(hist["account_id"] == me["account_id"]) & (hist["ts"] < me["ts"])]
        two_days = mine[(mine["ts"] > me["ts"] - pd.Timedelta("2D"))
                        & (mine["card_country"] == me["card_country"])]
        assert row["country_tx_count_2d"] == len(two_days) + 1
        big = mine[(mine["ts"] > me["ts"] - pd.Timedelta("90min")) & (mine["amount"] > 500)]
        assert (row["big_amount_max_90m"] == np.float32(big["amount"].max()) if len(big)
                else pd.isna(row["big_amount_max_90m"]))  # features are stored as float32
    result = runner.invoke(app, ["features", "list", "-c", str(cfg)], terminal_width=300)
    assert result.exit_code == 0 and "country_tx_count_2d" in result.output
    assert "blacklist_device_hit" not in result.output


def test_a_bad_declaration_exits_2_naming_file_feature_and_field(tmp_path):
    (tmp_path / "bad.yaml").write_text(FEATURES_FILE.replace("window: 2d", "window: 2 days"))
    cfg = tmp_path / "fraudlab.yaml"
    cfg.write_text(f"features:\n  definitions: [{tmp_path / 'bad.yaml'}]\n"
                   "  params: {high_amount: 500}\n")
    result = runner.invoke(app, ["features", "list", "-c", str(cfg)], terminal_width=300)
    assert result.exit_code == EXIT_USAGE
    text = " ".join(result.output.split())
    assert "bad.yaml, feature 'country_tx_count_2d', field 'window'" in text


def test_features_build_names_the_features_it_could_not_compute(tmp_path, world_dir):
    """Without the events table its features are not computed, and the build says so;
    features with no information in this dataset are named too."""
    (world_dir / "events.parquet").unlink()
    out = tmp_path / "ds.parquet"
    result = runner.invoke(app, ["features", "build", "--raw", str(world_dir), "--as-of",
                                 "2026-02-15", "--out", str(out)], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    from fraudlab.features import CATALOG

    n_events = sum(f.source == "events" for f in CATALOG)
    assert f"{n_events} configured feature(s) not computed, their source table is absent: " \
           f"events ({n_events}: login_failed_count_1h" in text
    ds = pd.read_parquet(out)
    flat = [f.name for f in CATALOG if f.name in ds and ds[f.name].nunique(dropna=False) <= 1]
    assert flat and f"{len(flat)} feature(s) constant or all missing" in text
