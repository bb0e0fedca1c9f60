"""The README's own-data example runs exactly as printed, on a card file of that layout."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudlab.datasets import SimulationConfig, simulate_world
from fraudlab.training._cli import EXIT_OK, app

README = Path(__file__).parents[2] / "README.md"


def _example() -> tuple[str, list[list[str]]]:
    text = README.read_text()
    section = text[text.index("## Your own data"):text.index("## The Python API")]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    config = next(body for lang, body in blocks if lang == "yaml" and "# cards.yaml" in body)
    commands = next(body for lang, body in blocks if lang == "bash")
    return config, [shlex.split(line) for line in commands.strip().splitlines()]


def _card_file(path: Path) -> None:
    """Half a year of card payments in the layout of the example: naive New York times, a
    card number, the merchant's place and a fraud flag. Frauds come in bursts: with 500
    accounts some 7-day windows of the protocol hold none; 2,000 give each of them a few."""
    w = simulate_world(SimulationConfig(accounts=2000, days=182, seed=3, history_days=0,
                                        start=dt.date(2020, 1, 1)))
    tx = w.transactions.dropna(subset=["merchant_id"])
    fraud = set(w.labels.loc[w.labels["is_fraud"], "tx_id"])
    local = tx["ts"].dt.tz_convert("America/New_York").dt.tz_localize(None)
    pd.DataFrame({
        "trans_date_trans_time": local.dt.strftime("%Y-%m-%d %H:%M:%S"),
        "cc_num": 4_000_000_000 + tx["account_id"].str[1:].astype(np.int64),
        "merchant": "fraud_" + tx["merchant_id"],
        "amt": tx["amount"],
        "merch_lat": tx["lat"], "merch_long": tx["lon"],
        "trans_num": tx["tx_id"].str.lower(),
        "is_fraud": tx["tx_id"].isin(fraud).astype(int),
    }).to_csv(path, index=False)


@pytest.mark.slow
def test_the_own_data_example_runs_as_printed(tmp_path, monkeypatch):
    config, commands = _example()
    monkeypatch.chdir(tmp_path)
    Path("cards.yaml").write_text(config)
    Path("cards").mkdir()
    _card_file(Path("cards/payments.csv"))
    runner = CliRunner()
    assert [c[:2] for c in commands] == [["fraudlab", "contracts"], ["fraudlab", "features"],
                                        ["fraudlab", "train"]]
    for command in commands:
        result = runner.invoke(app, command[1:], terminal_width=250)
        assert result.exit_code == EXIT_OK, (command, result.output)
    dataset = pd.read_parquet("cards/dataset.parquet")
    assert dataset["is_fraud"].sum() > 50 and str(dataset["ts"].dt.tz) == "UTC"
    assert "registered fraudlab-fraud version 1" in result.output
