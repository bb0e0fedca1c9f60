"""The ``fraudlab`` command line: parses, configures and calls the stages; no logic of its own.

Exit codes (for schedulers):

====  =====================================================================
0     success
1     unexpected error (a bug or an environment problem; see the log)
2     usage error (bad option or configuration)
3     a data contract failed (bad rows or tables; see the report path printed);
      nothing was trained, registered or promoted
4     a source could not be read (missing, empty or unreadable file, bad column map)
5     another refresh held the lock for longer than refresh.lock_timeout
====  =====================================================================

Heavy libraries are imported inside the commands so that ``fraudlab --help`` is fast.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONTRACT, EXIT_SOURCE, EXIT_LOCKED = 0, 1, 2, 3, 4, 5

app = typer.Typer(
    name="fraudlab",
    help="Research, train, explain and refresh fraud-detection models for payments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
contracts_app = typer.Typer(help="Check raw data against its contracts.", no_args_is_help=True)
features_app = typer.Typer(help="The feature catalog and labeled datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(contracts_app, name="contracts")
app.add_typer(features_app, name="features")
decisions_app = typer.Typer(help="The risk service's decision log (kept serving.retention).",
                            invoke_without_command=True)
app.add_typer(decisions_app, name="decisions")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML configuration file (default: $FRAUDLAB_CONFIG "
                 "or built-in defaults).", exists=True, dir_okay=False),
]


# Set when the loaded configuration asks for JSON lines: stdout then carries one JSON
# object per line and nothing else, and human-readable output goes to stderr.
_JSON = {"on": False}


def _load(config: Path | None, **overrides):
    import os

    import yaml
    from pydantic import ValidationError

    from ._config import CONFIG_ENV, load_config

    path = config or os.environ.get(CONFIG_ENV)
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            typer.echo(f"error: invalid configuration: {path}: "
                       f"{' '.join(str(exc).split())}", err=True)
            raise typer.Exit(EXIT_USAGE) from exc
        _JSON["on"] = isinstance(raw, dict) and raw.get("log_format") == "json"
    try:
        cfg = load_config(config, **overrides)
    except (ValidationError, ValueError) as exc:
        _fail(None, EXIT_USAGE, f"invalid configuration: {exc}")
    _JSON["on"] = cfg.log_format == "json"
    return cfg


def run() -> None:
    """The console script: the app, plus an error event for an unexpected failure when
    logging JSON lines (the traceback still goes to stderr, the exit code is 1)."""
    try:
        app()
    except Exception as exc:
        if _JSON["on"]:
            _json_log("error", exit_code=EXIT_ERROR, message=f"{type(exc).__name__}: {exc}")
        raise


def _console():
    from rich.console import Console

    # Soft wrap: long paths stay on one line, so logs can be grepped for file names.
    # With JSON lines on stdout, people read stderr.
    return Console(highlight=False, soft_wrap=True, stderr=_JSON["on"])


def _json_log(event: str, **fields) -> None:
    """One JSON line on stdout (``log_format: json``), for orchestrators' log collectors."""
    import json

    from fraudlab.data_contracts import json_safe

    typer.echo(json.dumps(json_safe({"time": dt.datetime.now(dt.UTC).isoformat(),
                                     "event": event, **fields}), allow_nan=False))


def _fail(console, code: int, message: str, **fields):
    """Stop with exit ``code``: an error event in JSON mode, a red line for people."""
    if _JSON["on"]:
        _json_log("error", exit_code=code, message=message, **fields)
    if console is not None:
        console.print(f"[red]error[/red]: {_escape(message)}")
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _log(console):
    """A progress logger: JSON events or plain lines."""
    def log(message: str) -> None:
        if _JSON["on"]:
            _json_log("progress", message=message)
        else:
            console.print(_escape(message))

    return log


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration as YAML, each field with its description."""
    from ._config import config_to_yaml

    typer.echo(config_to_yaml(_load(config)), nl=False)


@app.command()
def simulate(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: paths.raw).")] = None,
    accounts: Annotated[int | None, typer.Option(help="Number of customer accounts.")] = None,
    days: Annotated[int | None, typer.Option(help="Days to simulate.")] = None,
    history_days: Annotated[int | None, typer.Option(
        help="Days of history written before --start (default 180).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    start: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"],
                                                      help="First day (UTC).")] = None,
    emerging_from: Annotated[dt.datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="Day the emerging fraud pattern starts.")] = None,
    partition: Annotated[str | None, typer.Option(
        help="day: write the transactions as a folder hive-partitioned by day (the events "
             "by month), the layout of tables too large for one file.")] = None,
    shard_accounts: Annotated[int | None, typer.Option(
        help="Simulate in independent shards of this many accounts, one at a time (memory "
             "of one shard), written partitioned by day; see fraudlab.datasets.simulate_shards.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Generate the simulated payments world: five Parquet tables and manifest.json."""
    if partition not in (None, "day"):
        raise typer.BadParameter("the only partitioning is day", param_hint="--partition")
    given = {"accounts": accounts, "days": days, "history_days": history_days, "seed": seed,
             "start": start.date() if start else None,
             "emerging_from": emerging_from.date() if emerging_from else None}
    cfg = _load(config, simulation={k: v for k, v in given.items() if v is not None})
    target = out or cfg.path(cfg.paths.raw)
    console = _console()
    from fraudlab.datasets import simulate_world
    from fraudlab.features import write_tables

    if shard_accounts:
        _simulate_shards(console, cfg, target, shard_accounts)
        return
    with console.status(f"simulating {cfg.simulation.accounts:,} accounts over "
                        f"{cfg.simulation.days} days after {cfg.simulation.history_days} "
                        "days of history ..."):
        world = simulate_world(cfg.simulation)
        write_tables(world.tables(), target, world.manifest, partition=partition)
    rows = ", ".join(f"{n} {k}" for k, n in world.manifest["rows"].items())
    fraud = world.manifest["fraud"]
    console.print(f"wrote {target}: {rows}")
    console.print(f"fraud rate {fraud['fraud_rate']:.3%}; by type: "
                  + ", ".join(f"{k} {v}" for k, v in fraud["transactions_by_type"].items()))


def _simulate_shards(console, cfg, target: Path, shard_accounts: int) -> None:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fraudlab.datasets import merge_manifests, simulate_shards
    from fraudlab.features import write_tables

    n = -(-cfg.simulation.accounts // shard_accounts)
    manifests = []
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"{cfg.simulation.accounts:,} accounts in shards of "
                            f"{shard_accounts:,}", total=n)
        for s, world in simulate_shards(cfg.simulation, shard_accounts=shard_accounts):
            write_tables(world.tables(), target, partition="day", part=s)
            manifests.append(world.manifest)
            del world
            bar.update(task, completed=s + 1)
    manifest = merge_manifests(manifests, cfg.simulation)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rows = ", ".join(f"{n:,} {k}" for k, n in manifest["rows"].items())
    console.print(f"wrote {target}: {rows}; fraud rate {manifest['fraud']['fraud_rate']:.3%}")


@contracts_app.command("check")
def contracts_check(
    raw: Annotated[Path | None, typer.Option(help="Folder of raw tables (default: paths.raw).")] = None,
    as_of: Annotated[dt.datetime | None, typer.Option(
        help="No timestamp may be later than this (UTC); default: now.")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        help="Where contracts.json and quarantine.parquet go (default: contracts.report_dir).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate every raw table; print a table per source; exit 3 on any failure."""
    cfg = _load(config)
    source = raw or cfg.path(cfg.paths.raw)
    out = report_dir or cfg.path(cfg.contracts.report_dir)
    console = _console()
    from fraudlab.data_contracts import validate_raw, write_report
    from fraudlab.features import load_raw

    data = _guarded(console, load_raw, source, cfg.sources)
    with console.status("validating ..."):
        report = validate_raw(data.tables, cfg.contracts, as_of=as_of)
    paths = write_report(report, out)
    _print_report(console, report)
    if report.success:
        console.print(f"[green]all contracts passed[/green]; results in {paths['report']}")
        return
    n_q = len(report.quarantine)
    _fail(console, EXIT_CONTRACT, f"contracts failed: {len(report.failures)} rule(s); {n_q} "
          f"row(s) quarantined in {paths['quarantine']}; results in {paths['report']}",
          failures=[r.line() for r in report.failures[:20]], quarantined_rows=n_q)


@features_app.command("list")
def features_list(
    markdown: Annotated[bool, typer.Option(help="Print docs/features.md instead.")] = False,
    group: Annotated[str | None, typer.Option(help="Only this feature group.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the effective feature set (built-in and features.definitions, narrowed by
    features.include / exclude): name, entity, window, aggregation, description."""
    from fraudlab.features import catalog_markdown, catalog_version, resolve_features

    console = _console()
    cfg = _load(config)
    fs = _guarded(console, resolve_features, cfg.features)
    if markdown:
        typer.echo(catalog_markdown(fs), nl=False)
        return
    from rich.table import Table

    version = catalog_version(fs, cfg.features)
    t = Table(title=f"feature set {version} ({len(fs.features)} features)",
              title_justify="left")
    t.add_column("feature", no_wrap=True)
    for col in ("group", "entity", "window", "aggregation", "incl. current", "description"):
        t.add_column(col, overflow="fold")
    for f in fs.features:
        if group and f.group != group:
            continue
        detail = f.expr or f.where
        t.add_row(f.name, f.group, f.entity, f.window or "all",
                  f.agg + (f" ({detail})" if detail else ""),
                  "yes" if f.include_current else "no", f"{f.description} [{f.unit}]"
                  if f.unit else f.description)
    console.print(t)


@features_app.command("build")
def features_build(
    as_of: Annotated[dt.datetime, typer.Option(help="Build as of this time (UTC): nothing "
                                               "later is used, labels included.")],
    out: Annotated[Path, typer.Option(help="Output Parquet file (engine pandas) or folder "
                                           "of parts (engine dask).")],
    raw: Annotated[Path | None, typer.Option(help="Folder of raw tables (default: paths.raw).")] = None,
    start: Annotated[dt.datetime | None, typer.Option(help="First transaction time to include.")] = None,
    end: Annotated[dt.datetime | None, typer.Option(help="Transactions before this time only.")] = None,
    engine: Annotated[str, typer.Option(
        help="pandas (one process) or dask (a cluster; extra fraudlab[dask]).")] = "pandas",
    scheduler: Annotated[str | None, typer.Option(
        help="Engine dask: address of a running scheduler (default dask.scheduler, else a "
             "LocalCluster).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Engine dask: LocalCluster worker processes (default dask.workers).")] = None,
    memory_limit: Annotated[str | None, typer.Option(
        help="Engine dask: memory cap per LocalCluster worker, e.g. 6GB.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate the raw data, then build the labeled dataset with its contract."""
    if engine not in ("pandas", "dask"):
        raise typer.BadParameter(f"engine must be pandas or dask, not {engine!r}",
                                 param_hint="--engine")
    given = {"scheduler": scheduler, "workers": workers, "memory_limit": memory_limit}
    cfg = _load(config, dask={k: v for k, v in given.items() if v is not None})
    console = _console()
    if engine == "dask":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from ._pipeline import build_and_save_dask

        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      transient=False) as bar:
            bars: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = bar.add_task(stage, total=total)
                bar.update(bars[stage], completed=done)

            ds = _guarded(console, build_and_save_dask, cfg, as_of, out, raw=raw, start=start,
                          end=end, progress=progress)
        parts = ds.parts
        mature = sum(p["mature"] for p in parts)
        frauds = sum(p["mature_frauds"] for p in parts)
        console.print(f"wrote {out}: {ds.rows:,} transactions in {len(parts)} part(s); "
                      f"{mature:,} mature, fraud rate {frauds / max(mature, 1):.3%}; "
                      f"catalog {ds.attrs['catalog_version']}")
        return
    from ._pipeline import build_and_save

    with console.status("validating the raw data and building features ..."):
        ds = _guarded(console, build_and_save, cfg, as_of, out, raw=raw, start=start, end=end,
                      log=_log(console))
    mature = ds[ds["is_mature"]]
    console.print(f"wrote {out}: {len(ds):,} transactions x {ds.shape[1]} columns; "
                  f"{len(mature):,} mature, fraud rate {mature['is_fraud'].mean():.3%}; "
                  f"catalog {ds.attrs['catalog_version']}")


def _guarded(console, step, *args, **kwargs):
    """Run a step; turn the failures a user can act on into messages and exit codes."""
    from fraudlab._optional import MissingExtra
    from fraudlab.features import DeclarationError, SourceError

    from ._lock import RefreshLocked
    from ._pipeline import ContractFailure
    from ._protocol import ProtocolError
    from ._refresh import RefreshOrderError
    from ._registry import UntrustedModel

    try:
        return step(*args, **kwargs)
    except SourceError as exc:
        _fail(console, EXIT_SOURCE, str(exc))
    except ContractFailure as exc:
        if exc.report is not None:
            _print_report(console, exc.report)
        failures = [r.line() for r in exc.report.failures] if exc.report is not None else []
        _fail(console, EXIT_CONTRACT, f"contract failed: {exc}; nothing built, nothing "
              "registered", report=str(exc.report_path), failures=failures[:20],
              quarantined_rows=len(exc.report.quarantine) if exc.report is not None else 0)
    except (ProtocolError, RefreshOrderError, DeclarationError, MissingExtra) as exc:
        _fail(console, EXIT_USAGE, str(exc))
    except RefreshLocked as exc:
        _fail(console, EXIT_LOCKED, str(exc))
    except UntrustedModel as exc:
        _fail(console, EXIT_ERROR, str(exc))


@app.command()
def train(
    dataset: Annotated[Path | None, typer.Option(
        help="Labeled dataset from `features build` (a Parquet file, or the folder of "
             "parts of --engine dask); default: build one.",
        exists=True)] = None,
    as_of: Annotated[dt.datetime | None, typer.Option(
        help="Build the dataset from the raw data as of this time (UTC) when --dataset is "
        "not given; default: now.")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials (default: training.n_trials).")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds after which no new trial starts (default: training.timeout).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes on one study (default: training.workers).")] = None,
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage: memory, sqlite, journal or a database URL.")] = None,
    study_name: Annotated[str | None, typer.Option(help="Study name (to resume or share).")] = None,
    negative_rate: Annotated[float | None, typer.Option(
        help="Share of legitimate rows trained on, all frauds kept (default: "
             "training.negative_rate).")] = None,
    register: Annotated[bool, typer.Option(help="Register the model in MLflow.")] = True,
    config: ConfigOpt = None,
) -> None:
    """Tune, refit, calibrate and test a model; log it to MLflow and register it."""
    overrides = {k: v for k, v in {"n_trials": trials, "timeout": timeout, "workers": workers,
                                   "storage": storage, "study_name": study_name,
                                   "negative_rate": negative_rate}.items()
                 if v is not None}
    cfg = _load(config, training=overrides) if overrides else _load(config)
    if cfg.training.workers > 1 and cfg.training.storage == "memory":
        typer.echo("error: --workers > 1 needs --storage sqlite, journal or a database URL", err=True)
        raise typer.Exit(EXIT_USAGE)
    console = _console()
    from ._pipeline import build_and_save, read_for_training

    if dataset is None:
        when = as_of or dt.datetime.now(dt.UTC)
        dataset = cfg.path("data/datasets") / f"train-{when:%Y%m%dT%H%M}.parquet"
        with console.status("validating the raw data and building features ..."):
            ds = _guarded(console, build_and_save, cfg, when, dataset, log=_log(console))
        console.print(f"built {dataset}: {len(ds):,} transactions")
    else:
        ds = read_for_training(dataset, cfg.training)
    result = _guarded(console, _run_training, console, ds, cfg, dataset, register)
    m, b = result.model.test_metrics, result.baseline.test_metrics
    from rich.table import Table

    t = Table(title=f"test window {result.protocol_summary['times']['test_start'][:10]} .. "
              f"{result.protocol_summary['times']['test_end'][:10]} "
              f"({int(m['rows']):,} rows, {int(m['frauds'])} frauds); baseline: XGBoost "
              "defaults, no rebalancing", title_justify="left")
    t.add_column("metric")
    for col in ("tuned", "baseline", "difference"):
        t.add_column(col, justify="right", no_wrap=True)
    for k in m:
        if k.endswith("_score") or k.endswith("_loss"):
            t.add_row(k, f"{m[k]:.4f}", f"{b[k]:.4f}", f"{m[k] - b[k]:+.4f}")
    for k in sorted(set(result.model.type_recall) | set(result.baseline.type_recall)):
        tm, tb = result.model.type_recall.get(k, float("nan")), result.baseline.type_recall.get(k, float("nan"))
        t.add_row(f"recall at review threshold: {k}", f"{tm:.3f}", f"{tb:.3f}", f"{tm - tb:+.3f}")
    console.print(t)
    left_out = result.protocol.spec.get("left_out", {})
    if left_out:
        console.print(f"{len(left_out)} feature(s) left out of the model, constant or all "
                      "missing before the test window: "
                      + ", ".join(f"{k} ({v})" for k, v in list(left_out.items())[:8])
                      + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""))
    console.print(f"best trial {result.study.best_trial.number} of {len(result.study.trials)}: "
                  f"{result.model.params['rebalancing']} rebalancing, "
                  f"{result.model.params['n_rounds']} rounds")
    if result.version:
        console.print(f"registered {cfg.tracking.registered_model} version {result.version} "
                      f"(run {result.run_id}); aliases: challenger"
                      + (", champion" if result.version == "1" else ""))
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {cfg.tracking_uri()}")


@app.command("replay")
def replay_cmd(
    out: Annotated[Path, typer.Option(help="Output Parquet file: tx_id, every feature "
                                      "(and with --model, fraud_probability and tier).")],
    raw: Annotated[Path | None, typer.Option(help="Folder of raw tables (default: paths.raw).")] = None,
    as_of: Annotated[dt.datetime | None, typer.Option(help="Replay what was known at this "
                                                      "time (UTC); default: now.")] = None,
    model: Annotated[str | None, typer.Option(help="Score with this registered model, "
                                              "NAME@ALIAS or NAME/VERSION; its own "
                                              "features.json decides the features.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay the raw tables in time order through the incremental features, one event at
    a time, as a scoring service would see them."""
    cfg = _load(config)
    console = _console()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ._pipeline import replay_and_save

    with Progress("replaying", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("replay", total=None)
        frame, online = _guarded(console, replay_and_save, cfg, out, raw=raw, as_of=as_of,
                                 model=model, log=_log(console),
                                 progress=lambda n: bar.update(task, completed=n))
    size = online.state_size()
    console.print(f"wrote {out}: {len(frame):,} transactions x {len(online.features.features)} "
                  f"features; late rows {online.late:,}; state {size['entities']:,} entities, "
                  f"{size['bytes'] / 1e6:.1f} MB")
    if model:
        counts = frame["tier"].value_counts()
        console.print("tiers: " + ", ".join(f"{t} {int(counts.get(t, 0)):,}"
                                            for t in ("block", "review", "pass")))


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="The model to serve, NAME@ALIAS or NAME/VERSION.")],
    host: Annotated[str | None, typer.Option(help="Interface (default serving.host, "
                                             "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serving.port).")] = None,
    state: Annotated[str | None, typer.Option(
        help="State directory (default serving.state), or redis://HOST:PORT/DB to share "
             "one state with other replicas (decisions then go under serving.state).")] = None,
    warm_from: Annotated[Path | None, typer.Option(help="Replay this folder of raw tables "
                                                   "into a new state before serving.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the risk service: score each payment with the model and its own features."""
    cfg = _load(config)
    console = _console()
    import uvicorn

    from fraudlab.serving import RiskService, Scorer, StoreBusy, create_app

    from ._registry import load_registered

    scorer_model, mv, _ = _guarded(console, load_registered, cfg, model)
    scorer = Scorer(scorer_model)
    from fraudlab.data_contracts import parse_duration

    features_version = scorer_model.spec.get("features_version", "?")
    local = cfg.path(cfg.serving.state)
    if state is not None and state.startswith(("redis://", "rediss://", "unix://")):
        from fraudlab.serving import RedisStore

        store = _guarded(console, RedisStore, state, f"{cfg.serving.redis_prefix}:{mv.name}",
                         features_version, lock_timeout=cfg.serving.lock_timeout)
    else:
        store = Path(state) if state is not None else local
    service = RiskService(scorer, store, model_version=f"{mv.name}/{mv.version}",
                          features_version=features_version, fsync=cfg.serving.fsync,
                          dedup_window=parse_duration(cfg.serving.dedup_window).total_seconds(),
                          decisions=local / "decisions" if not isinstance(store, Path) else None,
                          snapshot_every=cfg.serving.snapshot_every,
                          snapshot_in_background=cfg.serving.snapshot_in_background)
    state_dir = service.store.where
    warm = data = None
    if warm_from is not None:
        import pandas as pd

        from fraudlab.features import event_stream

        from ._pipeline import load_validated

        data, _ = _guarded(console, load_validated, cfg, pd.Timestamp.now(tz="UTC"), warm_from,
                           log=_log(console))
        warm = event_stream({k: t.frame for k, t in data.tables.items()})
    with console.status("restoring the state ..."):
        try:
            done = service.start(warm)
        except StoreBusy as exc:
            _fail(console, EXIT_USAGE, f"the state could not be opened: {exc}")
        except ValueError as exc:  # a snapshot of other declarations or format version
            _fail(console, EXIT_USAGE, f"the state could not be restored: {exc}; start on a "
                  "fresh state with --warm-from")
    # The history's tables are not kept while serving: a background snapshot forks the
    # process, and a fork costs in proportion to the memory it maps.
    warm = data = None
    console.print(f"{mv.name} version {mv.version}: state {state_dir} "
                  + ("restored" if done["restored"] else f"warmed with {done['warmed']:,} rows")
                  + f", {done['replayed']:,} logged rows replayed; serving on "
                  f"http://{host or cfg.serving.host}:{port or cfg.serving.port} (docs at /docs)")
    # The warmed state is millions of long-lived objects: a full collection walking them
    # all stalls every request behind it for hundreds of milliseconds. Frozen, they are
    # left out of collections; objects made while serving are collected as usual.
    import gc

    gc.collect()
    gc.freeze()
    stop = _watch_alias(cfg, model, mv, service, warm_from, _log(console))
    app = create_app(service, token_env=cfg.serving.token_env,
                     max_body_bytes=cfg.serving.max_body_bytes, max_rows=cfg.serving.max_rows,
                     max_future_seconds=parse_duration(cfg.serving.max_future).total_seconds(),
                     close_on_shutdown=True)
    try:
        uvicorn.run(app, host=host or cfg.serving.host, port=port or cfg.serving.port,
                    log_level="warning")
    finally:
        stop.set()
        service.close()


def _watch_alias(cfg, ref: str, mv, service, warm_from, log):
    """Check the served alias every serving.reload_every seconds; when it moves, or its
    version's thresholds change, load the version (its code verified) and let it take over
    (RiskService.swap_model)."""
    import threading

    stop = threading.Event()
    if "@" not in ref or not cfg.serving.reload_every:
        return stop
    name, alias = ref.split("@", 1)

    def history():
        """The --warm-from rows, read only if swap_model iterates them (a version with
        other features); one that shares the state never does."""
        if warm_from is None:
            return None

        def rows():
            import pandas as pd

            from fraudlab.features import event_stream

            from ._pipeline import load_validated

            data, _ = load_validated(cfg, pd.Timestamp.now(tz="UTC"), warm_from)
            yield from event_stream({k: t.frame for k, t in data.tables.items()})

        return rows()

    def watch() -> None:
        from ._registry import load_registered, setup_mlflow, version_tiers

        client = setup_mlflow(cfg)
        # A new version, or the same one at thresholds a refresh re-chose for it.
        current = (mv.version, version_tiers(mv))
        while not stop.wait(cfg.serving.reload_every):
            try:
                now = client.get_model_version_by_alias(name, alias)
                seen = (now.version, version_tiers(now))
                if seen == current:
                    continue
                model, _, _ = load_registered(cfg, f"{name}/{now.version}")
                how = service.swap_model(model, f"{name}/{now.version}", history=history())
                what = ("moved to version" if now.version != current[0]
                        else "has new thresholds on version")
                log(f"{name}@{alias} {what} {now.version}: {how}")
                if not how.startswith("refused"):
                    current = seen
            except Exception as exc:  # a registry outage must not stop the service
                log(f"checking {name}@{alias} failed, still serving version {current[0]}: "
                    f"{exc}")

    threading.Thread(target=watch, name="fraudlab-alias-watch", daemon=True).start()
    return stop


@decisions_app.callback()
def decisions(
    ctx: typer.Context,
    since: Annotated[dt.datetime | None, typer.Option(help="Decided at or after (UTC).")] = None,
    tier: Annotated[str | None, typer.Option(help="block, review or pass.")] = None,
    state: Annotated[Path | None, typer.Option(help="State directory (default serving.state).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print decision records as JSON lines, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from fraudlab.serving import read_decisions

    cfg = _load(config)
    for rec in read_decisions(state or cfg.path(cfg.serving.state), since=since, tier=tier):
        typer.echo(json.dumps(rec))


@decisions_app.command("purge")
def decisions_purge(
    before: Annotated[dt.datetime, typer.Option(help="Delete days before this (UTC), only "
                                                "those older than serving.retention.")],
    state: Annotated[Path | None, typer.Option(help="State directory (default serving.state).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Delete decision days older than both --before and serving.retention."""
    from fraudlab.data_contracts import parse_duration
    from fraudlab.serving import purge_decisions

    cfg = _load(config)
    days = parse_duration(cfg.serving.retention).days
    gone = purge_decisions(state or cfg.path(cfg.serving.state), before, days)
    typer.echo(f"deleted {len(gone)} day file(s) older than {days} days and {before:%Y-%m-%d}")


@app.command()
def report(
    dataset: Annotated[Path, typer.Option(help="Labeled dataset (a Parquet file or a folder "
                                               "of parts) to evaluate on.", exists=True)],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")],
    model: Annotated[str, typer.Option(
        help="NAME@ALIAS or NAME/VERSION (default: the configured model's champion).")] = "",
    start: Annotated[dt.datetime | None, typer.Option(
        help="First transaction time evaluated (default: the model's test window).")] = None,
    end: Annotated[dt.datetime | None, typer.Option(help="Evaluate transactions before this.")] = None,
    compare: Annotated[str, typer.Option(help="Alias to compare with ('' for none).")] = "champion",
    include_known_fraud_accounts: Annotated[bool, typer.Option(
        help="Also score accounts with a fraud reported before the window (the model's test "
        "window leaves them out).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write the reviewer report of a registered model (self-contained HTML) and log it
    to the model's MLflow run."""
    cfg = _load(config)
    console = _console()
    from ._pipeline import read_dataset
    from ._reporting import write_model_report

    ref = model or f"{cfg.tracking.registered_model}@champion"
    with console.status(f"scoring, explaining and writing the report of {ref} ..."):
        ev = _guarded(console, write_model_report, cfg, ref, read_dataset(dataset), out,
                      start=start, end=end, compare=compare or None,
                      include_known_fraud_accounts=include_known_fraud_accounts)
    console.print(f"wrote {out} ({ev.window['rows']:,} transactions, {ev.window['frauds']} frauds, "
                  f"{ev.timings['figures']:.1f} s)")


@app.command("refresh")
def refresh_cmd(
    as_of: Annotated[dt.datetime | None, typer.Option(
        help="Run the period as of this time (UTC); default: now.")] = None,
    backfill: Annotated[bool, typer.Option(
        help="Compute a period older than the newest completed one: reported and audited, "
        "but nothing registered and no alias moved.")] = False,
    config: ConfigOpt = None,
) -> None:
    """One refresh period: validate, build, train a challenger, compare with the champion,
    measure drift and new patterns, report, then register and promote (or keep).

    Exit codes: 0 kept or promoted (or already done), 2 a period older than the newest
    completed one (without --backfill) or too little history, 3 contract failed, 4 source
    unreadable, 5 lock held by another refresh, 1 any other error.
    """
    cfg = _load(config)
    console = _console()
    outcome = _refresh_once(console, cfg, as_of or dt.datetime.now(dt.UTC), backfill)
    if cfg.log_format != "json":
        console.print(f"report: {outcome.report}")


def _refresh_once(console, cfg, as_of, backfill: bool = False):
    from ._refresh import refresh

    outcome = _guarded(console, refresh, cfg, as_of, log=_log(console), backfill=backfill)
    if _JSON["on"]:
        _json_log("decision", **{k: v for k, v in outcome.to_dict().items() if k != "patterns"},
                  patterns=[p["summary"] for p in outcome.patterns])
        return outcome
    colour = {"promoted": "green", "first champion": "green", "kept": "yellow"}.get(outcome.status, "white")
    console.print(f"[{colour}]{outcome.status}[/{colour}] as of {outcome.as_of}: "
                  f"challenger version {outcome.challenger_version}, champion before "
                  f"{outcome.champion_version or 'none'}")
    for reason in outcome.reasons:
        console.print(f"  - {_escape(reason)}")
    for warning in outcome.warnings:
        console.print(f"  [yellow]warning[/yellow]: {_escape(warning)}")
    d = outcome.drift
    if d:
        console.print(f"  drift: score PSI {d['score_psi']:.3f}; major feature drift: "
                      f"{', '.join(d['major_features'][:6]) or 'none'}; among frauds: "
                      f"{', '.join(d.get('fraud_major_features', [])[:6]) or 'none'}; champion missed "
                      f"{d['missed_frauds']} matured frauds, the challenger catches "
                      f"{d['challenger_catches_missed']} of them")
    for p in outcome.patterns[:3]:
        console.print(f"  pattern: {_escape(p['summary'])}")
    return outcome


@app.command()
def backtest(
    from_: Annotated[dt.datetime, typer.Option("--from", help="First period start (UTC).")],
    to: Annotated[dt.datetime, typer.Option(help="End of the last period (UTC).")],
    every: Annotated[str, typer.Option(help="Period length, e.g. 7d.")] = "7d",
    policy: Annotated[str, typer.Option(
        help="Comma-separated policies: never, always, drift, ap_rule (promote by average "
        "precision), operating_rule (promote at the operating point).")] = "never,always,drift",
    as_of: Annotated[dt.datetime | None, typer.Option(
        help="Outcomes as known at this time (default: --to plus the label maturity).")] = None,
    out: Annotated[Path | None, typer.Option(help="HTML report (default: under paths.reports).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay refresh periods over history and compare refresh policies."""
    cfg = _load(config)
    console = _console()
    from fraudlab.data_contracts import parse_duration
    from fraudlab.evaluation import render_backtest
    from fraudlab.features import build_dataset

    from ._backtest import champion_params, run_backtest
    from ._pipeline import load_validated

    to_ts = to.replace(tzinfo=dt.UTC) if to.tzinfo is None else to
    when = as_of or (to_ts + parse_duration(cfg.features.label_maturity).to_pytimedelta())
    with console.status("validating the raw data and building features ..."):
        data, _ = _guarded(console, load_validated, cfg, when, log=_log(console))
        ds = build_dataset(data, when, config=cfg.features)
    params = champion_params(cfg)
    console.print("parameters: " + ("the champion's" if params else "XGBoost's defaults"))
    result = _guarded(console, run_backtest, ds, cfg, from_, to_ts, every,
                      [p.strip() for p in policy.split(",")], params=params,
                      log=lambda m: console.print(_escape(m)))
    target = out or cfg.path(cfg.paths.reports) / f"backtest-{from_:%Y%m%d}-{to_ts:%Y%m%d}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_backtest(result.periods, result.first_caught, by_type=result.by_type),
                      encoding="utf-8")
    totals = result.periods.groupby("policy", sort=False)[
        ["retrained", "promoted", "frauds", "fraud_caught", "fraud_amount_saved", "reviews",
         "false_blocks"]].sum()
    console.print(totals.to_string())
    console.print(result.first_caught.to_string(index=False))
    console.print(result.by_type.pivot(index="fraud_type", columns="policy", values="recall")
                  .round(3).to_string())
    console.print(f"wrote {target}")


DEMO_PERIODS = ("2026-04-05", "2026-04-26", "2026-06-03")


@app.command()
def demo(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Demo configuration (default: configs/demo.yaml).",
        exists=True, dir_okay=False)] = None,
    periods: Annotated[str, typer.Option(help="Comma-separated as-of dates of the refresh "
                                         "periods.")] = ",".join(DEMO_PERIODS),
) -> None:
    """The main job on the built-in simulated world: generate the data if absent, train
    the first champion, then refresh across the start of the emerging fraud pattern."""
    import time

    path = config or Path("configs/demo.yaml")
    if not path.exists():
        typer.echo(f"error: {path} not found (run from the repository root or pass -c)", err=True)
        raise typer.Exit(EXIT_USAGE)
    cfg = _load(path)
    console = _console()
    t0 = time.perf_counter()
    raw = cfg.path(cfg.paths.raw)
    if not (raw / "manifest.json").exists():
        from fraudlab.datasets import simulate_world
        from fraudlab.features import write_tables

        with console.status(f"simulating {cfg.simulation.accounts:,} accounts over "
                            f"{cfg.simulation.days} days ..."):
            world = simulate_world(cfg.simulation)
            write_tables(world.tables(), raw, world.manifest)
        console.print(f"simulated world in {raw}: emerging pattern from "
                      f"{cfg.simulation.emerging_start()}")
    else:
        console.print(f"using the simulated world in {raw}")
    outcomes = []
    for i, day in enumerate(p.strip() for p in periods.split(",")):
        console.rule(f"refresh period {i + 1}: as of {day}")
        outcomes.append(_refresh_once(console, cfg, dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)))
    console.rule("done")
    for o in outcomes:
        console.print(f"{o.as_of[:10]}: {o.status:15s} report {o.report}")
    console.print(f"audit log: {cfg.path(cfg.refresh.audit_log)}")
    console.print(f"MLflow UI: {Path(sys.executable).parent / 'mlflow'} ui --backend-store-uri "
                  f"{cfg.tracking_uri()} --host 127.0.0.1  (then open http://127.0.0.1:5000)")
    console.print(f"finished in {time.perf_counter() - t0:.0f} s")


def _run_training(console, ds, cfg, dataset_path, register: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ._train import train_model

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), "ETA", TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("optuna trials", total=cfg.training.n_trials)

        def tick(study, trial) -> None:
            best = study.best_value if any(t.value is not None for t in study.trials) else float("nan")
            done = sum(t.state.is_finished() for t in study.trials)
            progress.update(task, completed=min(done, cfg.training.n_trials),
                            description=f"optuna trials (best {cfg.training.objective} {best:.4f})")

        return train_model(ds, cfg, dataset_path=dataset_path, register=register,
                           callbacks=[tick])


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _print_report(console, report) -> None:
    """One line per passing source; a table of the failing rules for each failing one."""
    from rich.markup import escape
    from rich.table import Table

    for name, rows in report.tables.items():
        results = [r for r in report.results if r.table == name]
        failed = [r for r in results if not r.success]
        origin = results[0].origin if results else name
        head = f"{name} ({origin}, {rows:,} rows): {len(results) - len(failed)}/{len(results)} rules passed"
        if not failed:
            console.print(f"[green]ok[/green] {head}")
            continue
        for r in failed:
            console.print(f"[red]FAIL[/red] {escape(r.line())}")
        t = Table(title=f"[red]FAILED[/red] {head}", title_justify="left")
        for col in ("rule", "expectation", "column", "failing rows", "examples"):
            t.add_column(col, overflow="fold")
        for r in failed:
            rule = r.rule if r.level == "row" else f"{r.rule}: {r.message}"
            t.add_row(escape(rule), r.expectation, r.column or "", f"{r.failing_count:,}",
                      escape(", ".join(map(str, r.examples[:3]))))
        console.print(t)
