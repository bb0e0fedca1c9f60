"""The steps that read and write: raw data in, contracts checked, labeled dataset out.

These compose the lower stages for the CLI, the refresh cycle and notebooks; every step
that touches the disk lives here, not in the stages.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data_contracts import parse_duration

from ._config import FraudlabConfig, TrainingConfig


class ContractFailure(Exception):
    """A data contract failed; nothing downstream may run. ``report_path`` has details."""

    def __init__(self, what: str, report_path: Path, summary: str, report=None):
        self.report_path, self.report = report_path, report
        super().__init__(f"{what} failed its contracts: {summary}; see {report_path}")


def load_validated(config: FraudlabConfig, as_of, raw: Path | None = None,
                   report_dir: Path | None = None, log=None):
    """Load every raw row, validate every contract, then keep what was known at ``as_of``.

    Validation sees the whole tables before the as-of cut, so a row whose time is missing
    or unreadable is quarantined, never cut away unseen. Rows dated after ``as_of`` follow
    ``contracts.after_as_of``: left out of the period and counted (``ignore``, logged
    through ``log``), or quarantined.

    The extra columns the configured feature set declares are kept and checked; any
    other column beyond the canonical ones is left out and named through ``log``.

    Raises
    ------
    fraudlab.features.SourceError
        A source is missing or unreadable.
    fraudlab.features.DeclarationError
        The configured feature declarations are wrong.
    ContractFailure
        Any contract failed; the report and the quarantine file are written first.
    """
    from fraudlab.data_contracts import to_utc, validate_raw, write_report
    from fraudlab.features import load_raw, resolve_features

    source = raw or config.path(config.paths.raw)
    columns = resolve_features(config.features).columns
    data = load_raw(source, config.sources, columns=columns)
    for table in data.tables.values():
        if table.dropped and log is not None:
            log(f"{table.origin}: column(s) {', '.join(table.dropped)} left out: not "
                "canonical and not declared under columns: in a features file")
    as_of = to_utc(as_of)
    report = validate_raw(data.tables, config.contracts, as_of=as_of,
                          after_as_of=config.contracts.after_as_of)
    if not report.success:
        paths = write_report(report, report_dir or config.path(config.contracts.report_dir))
        summary = "; ".join(r.line() for r in report.failures[:3])
        raise ContractFailure(f"raw data in {source}", paths["report"], summary, report)
    later = {k: n for k, n in report.later_rows.items() if n}
    if later and log is not None:
        log(f"rows dated after the as-of time {as_of.isoformat()}, left out of this period "
            "(contracts.after_as_of = ignore): "
            + ", ".join(f"{k} {n:,}" for k, n in later.items()))
    return data.known_at(as_of), report


def build_and_save(config: FraudlabConfig, as_of, out: Path, *, raw: Path | None = None,
                   start=None, end=None, log=None) -> pd.DataFrame:
    """Validate the raw data, build the labeled dataset (with its contract) and write it
    as Parquet with its contract results next to it (``.contract.json``)."""
    from fraudlab.data_contracts import json_safe
    from fraudlab.features import DatasetContractError, build_dataset

    data, raw_report = load_validated(config, as_of, raw, log=log)
    try:
        ds = build_dataset(data, as_of, start=start, end=end, config=config.features)
    except DatasetContractError as exc:
        from fraudlab.data_contracts import write_report

        paths = write_report(exc.report, config.path(config.contracts.report_dir))
        raise ContractFailure("the labeled dataset", paths["report"], str(exc),
                              exc.report) from exc
    if log is not None:
        for line in feature_gaps(ds, config):
            log(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    contract = {"raw": raw_report.to_dict(), "dataset": ds.attrs.get("contract")}
    attrs = dict(ds.attrs)
    ds.attrs.clear()  # Parquet metadata holds only JSON-safe attributes
    ds.attrs.update({k: v for k, v in attrs.items() if k != "contract"})
    # Written under temporary names and renamed, so a killed build leaves no half file.
    tmp = out.with_name(f".{out.name}.tmp")
    ds.to_parquet(tmp, index=False)
    side = out.with_suffix(".contract.json")
    side_tmp = side.with_name(f".{side.name}.tmp")
    side_tmp.write_text(json.dumps(json_safe(contract), indent=2, allow_nan=False) + "\n")
    os.replace(side_tmp, side)
    os.replace(tmp, out)
    ds.attrs["contract"] = contract
    return ds


@contextmanager
def dask_client(config: FraudlabConfig):
    """A Dask client on ``config.dask.scheduler``, or on a LocalCluster of worker
    processes bound to 127.0.0.1 (closed on exit)."""
    from fraudlab._optional import require

    distributed = require("distributed", "dask", "the Dask engine")
    from fraudlab.features import expand_env

    address = expand_env(config.dask.scheduler, "dask.scheduler") if config.dask.scheduler else ""
    if address:
        with distributed.Client(address) as client:
            yield client
        return
    d = config.dask
    with distributed.LocalCluster(n_workers=d.workers, threads_per_worker=d.threads_per_worker,
                                  memory_limit=d.memory_limit, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def build_and_save_dask(config: FraudlabConfig, as_of, out: Path, *, raw: Path | None = None,
                        start=None, end=None, client=None, progress=None):
    """Validate and build the labeled dataset on a Dask cluster, as a partitioned
    dataset in the folder ``out`` (see :func:`fraudlab.features.build_dataset_dask`).

    Every raw file is validated on its own by the workers; a failure of the raw data or
    of the dataset writes the report and the quarantine, and nothing is written at
    ``out``. ``client``: a running Dask client (default one from :func:`dask_client`).

    Raises
    ------
    ContractFailure
    """
    from fraudlab.data_contracts import write_report
    from fraudlab.features import DatasetContractError, RawContractError, build_dataset_dask

    source = raw or config.path(config.paths.raw)
    d = config.dask

    def build(c):
        return build_dataset_dask(
            source, as_of, out, client=c, start=start, end=end, config=config.features,
            sources=config.sources, contracts=config.contracts,
            after_as_of=config.contracts.after_as_of, partitions=d.partitions, block=d.block,
            scratch=config.path(d.scratch) if d.scratch else None, progress=progress)

    try:
        if client is not None:
            return build(client)
        with dask_client(config) as c:
            return build(c)
    except (RawContractError, DatasetContractError) as exc:
        paths = write_report(exc.report, config.path(config.contracts.report_dir))
        what = f"raw data in {source}" if isinstance(exc, RawContractError) else "the labeled dataset"
        summary = "; ".join(r.line() for r in exc.report.failures[:3])
        raise ContractFailure(what, paths["report"], summary, exc.report) from exc


def feature_gaps(dataset: pd.DataFrame, config: FraudlabConfig) -> list[str]:
    """Lines that say which configured features a dataset lacks (their source table is
    absent) and which it holds without information (constant or all missing)."""
    from fraudlab.features import dataset_features, resolve_features

    built = dataset_features(dataset)
    names = set(built.names())
    absent: dict[str, list[str]] = {}
    for f in resolve_features(config.features).features:
        if f.name not in names:
            absent.setdefault(f.source, []).append(f.name)
    lines = []
    if absent:
        n = sum(len(v) for v in absent.values())
        lines.append(f"{n} configured feature(s) not computed, their source table is absent: "
                     + "; ".join(f"{src} ({len(v)}: {', '.join(v[:4])}"
                                 + (", ..." if len(v) > 4 else "") + ")"
                                 for src, v in absent.items()))
    flat = [f.name for f in built.features if dataset[f.name].nunique(dropna=False) <= 1]
    if flat:
        lines.append(f"{len(flat)} feature(s) constant or all missing in this dataset, so "
                     "they carry no information (training leaves out those that are so "
                     f"before its test window): {', '.join(flat[:10])}"
                     + (f" and {len(flat) - 10} more" if len(flat) > 10 else ""))
    return lines


def read_dataset(path: Path, start=None, end=None) -> pd.DataFrame:
    """Read a labeled dataset written by :func:`build_and_save` (a Parquet file) or
    :func:`build_and_save_dask` (a folder of parts: only those overlapping
    ``start <= ts < end`` are read), with its contract."""
    from fraudlab.features import PartitionedDataset

    if Path(path).is_dir():
        parts = PartitionedDataset.open(path)
        ds = parts.read(start, end)
        ds.attrs["contract"] = json.loads((Path(path) / "_dataset.json").read_text())["contract"]
        return ds
    ds = pd.read_parquet(path)
    if start is not None or end is not None:
        from fraudlab.data_contracts import to_utc

        keep = pd.Series(True, index=ds.index)
        if start is not None:
            keep &= ds["ts"] >= to_utc(start)
        if end is not None:
            keep &= ds["ts"] < to_utc(end)
        ds = ds[keep.to_numpy()].reset_index(drop=True)
    side = Path(path).with_suffix(".contract.json")
    if side.exists():
        ds.attrs["contract"] = json.loads(side.read_text())
    return ds


def read_for_training(path: Path, config: TrainingConfig | None = None) -> pd.DataFrame:
    """Read a labeled dataset for :func:`train_model`: only the rows its protocol needs.

    A partitioned dataset is read one part at a time, so that memory holds only:

    - with ``training.train_window``, the rows from the oldest fold's training window on
      (older frauds stay with weight 0: they name the accounts known compromised);
    - with ``training.negative_rate`` below 1, every fraud and a sample of the legitimate
      rows older than any validation, calibration or test window
      (:func:`fraudlab.training.sample_negatives`), and every row after.

    The protocol built on the result is the one built on the whole dataset with the same
    settings. A single Parquet file is read whole (the protocol samples it).

    Parameters
    ----------
    path : Path
        A Parquet file or a partitioned dataset's folder.
    config : TrainingConfig, optional

    Returns
    -------
    DataFrame
        With a ``sample_weight`` column when a folder was read sampled or bounded.
    """
    from fraudlab.features import LABEL, PartitionedDataset

    from ._protocol import SAMPLE_WEIGHT, judged_from, sample_negatives

    config = config or TrainingConfig()
    sampled, bounded = config.negative_rate < 1, bool(config.train_window)
    if not Path(path).is_dir() or not (sampled or bounded):
        return read_dataset(path)  # one file is read whole; the protocol samples it
    parts = PartitionedDataset.open(path)
    times = parts.read(columns=["ts", "is_mature"])
    mature = times["ts"][times["is_mature"].to_numpy()]
    if mature.empty:
        return read_dataset(path)  # the protocol says what is missing
    keep_from = judged_from(mature.max(), config)
    start = keep_from - parse_duration(config.train_window) if bounded else None
    frames = []
    for part in parts.iter_parts():
        old = (part["ts"] < start).to_numpy() if start is not None else np.zeros(len(part), bool)
        # Older frauds stay, weighing 0 (no window learns from them, and no population
        # statistic counts them): they say which accounts were known compromised before a
        # calibration or test window, which leave those accounts out.
        keep = ~old | (part[LABEL] == 1).to_numpy()
        part = sample_negatives(part[keep], config.negative_rate, seed=config.seed,
                                keep_from=keep_from)
        if old.any():
            part[SAMPLE_WEIGHT] = np.where((part["ts"] < start).to_numpy(), np.float32(0),
                                           part[SAMPLE_WEIGHT])
        frames.append(part)
    ds = pd.concat(frames, ignore_index=True)
    ds.attrs = {**parts.attrs, **({"negative_rate": config.negative_rate} if sampled else {}),
                "contract": json.loads((Path(path) / "_dataset.json").read_text())["contract"]}
    return ds


def replay_and_save(config: FraudlabConfig, out: Path, *, raw: Path | None = None,
                    as_of=None, model: str | None = None, log=None, progress=None):
    """Validate the raw data, replay it in time order through the incremental features
    (and with ``model``, score every transaction), and write one row per transaction.

    Parameters
    ----------
    config : FraudlabConfig
    out : Path
        Parquet file: ``tx_id``, every feature, and with ``model`` ``fraud_probability``
        and ``tier``.
    raw : Path, optional
        Folder of raw tables (default ``paths.raw``).
    as_of : timestamp, optional
        Replay what was known then (default: now).
    model : str, optional
        ``NAME@ALIAS`` or ``NAME/VERSION``: its own ``features.json`` decides the features.
    log, progress : callable, optional
        Lines to print; the number of transactions replayed so far.

    Returns
    -------
    (DataFrame, OnlineFeatures)
    """
    from fraudlab.data_contracts import to_utc
    from fraudlab.evaluation import tier_of
    from fraudlab.features import OnlineFeatures, replay, resolve_features

    as_of = to_utc(as_of if as_of is not None else pd.Timestamp.now(tz="UTC"))
    data, _ = load_validated(config, as_of, raw, log=log)
    scorer = None
    if model:
        from ._registry import load_scorer

        scorer = load_scorer(config, model)
        online = scorer.online
    else:
        online = OnlineFeatures(resolve_features(config.features), config.features)
    tables = {name: t.frame for name, t in data.tables.items()}
    frame, online = replay(tables, online=online, progress=progress)
    if scorer is not None:
        from ._served import calibrate, encode

        spec = scorer.model.spec
        margin = scorer.model.booster.inplace_predict(encode(spec, frame), predict_type="margin")
        frame["fraud_probability"] = calibrate(spec["calibration"], margin)
        frame["tier"] = tier_of(frame["fraud_probability"], spec["tiers"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return frame, online
