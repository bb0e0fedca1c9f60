"""The steps that read and write: raw data in, contracts checked, labeled dataset out.

These compose the lower stages for the CLI, the refresh cycle and notebooks; every step
that touches the disk lives here, not in the stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ._config import FraudlabConfig


class ContractFailure(Exception):
    """A data contract failed; nothing downstream may run. ``report_path`` has details."""

    def __init__(self, what: str, report_path: Path, summary: str, report=None):
        self.report_path, self.report = report_path, report
        super().__init__(f"{what} failed its contracts: {summary}; see {report_path}")


def load_validated(config: FraudlabConfig, as_of, raw: Path | None = None,
                   report_dir: Path | None = None):
    """Load the raw tables as known at ``as_of`` and validate every contract.

    Raises
    ------
    fraudlab.features.SourceError
        A source is missing or unreadable.
    ContractFailure
        Any contract failed; the report and the quarantine file are written first.
    """
    from fraudlab.data_contracts import validate_raw, write_report
    from fraudlab.features import load_raw

    source = raw or config.path(config.paths.raw)
    data = load_raw(source, config.sources, as_of=as_of)
    report = validate_raw(data.tables, config.contracts, as_of=as_of)
    if not report.success:
        paths = write_report(report, report_dir or config.path(config.contracts.report_dir))
        summary = "; ".join(r.line() for r in report.failures[:3])
        raise ContractFailure(f"raw data in {source}", paths["report"], summary, report)
    return data, report


def build_and_save(config: FraudlabConfig, as_of, out: Path, *, raw: Path | None = None,
                   start=None, end=None) -> pd.DataFrame:
    """Validate the raw data, build the labeled dataset (with its contract) and write it
    as Parquet with its contract results next to it (``.contract.json``)."""
    from fraudlab.features import DatasetContractError, build_dataset

    data, raw_report = load_validated(config, as_of, raw)
    try:
        ds = build_dataset(data, as_of, start=start, end=end, config=config.features)
    except DatasetContractError as exc:
        from fraudlab.data_contracts import write_report

        paths = write_report(exc.report, config.path(config.contracts.report_dir))
        raise ContractFailure("the labeled dataset", paths["report"], str(exc),
                              exc.report) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    contract = {"raw": raw_report.to_dict(), "dataset": ds.attrs.get("contract")}
    attrs = dict(ds.attrs)
    ds.attrs.clear()  # Parquet metadata holds only JSON-safe attributes
    ds.attrs.update({k: v for k, v in attrs.items() if k != "contract"})
    ds.to_parquet(out, index=False)
    out.with_suffix(".contract.json").write_text(json.dumps(contract, indent=2, default=str) + "\n")
    ds.attrs["contract"] = contract
    return ds


def read_dataset(path: Path) -> pd.DataFrame:
    """Read a labeled dataset written by :func:`build_and_save`, with its contract."""
    ds = pd.read_parquet(path)
    side = Path(path).with_suffix(".contract.json")
    if side.exists():
        ds.attrs["contract"] = json.loads(side.read_text())
    return ds
