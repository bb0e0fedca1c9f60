"""Shared fixtures: small, seeded simulated worlds, generated once per session."""

from __future__ import annotations

import os

import pandas as pd
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# The simulated worlds start on 2026-01-01; validating "as of" a fixed date keeps the
# tests independent of today's date.
@pytest.fixture(scope="session")
def as_of():
    return pd.Timestamp("2027-06-01", tz="UTC")


@pytest.fixture(scope="session")
def small_world():
    """200 accounts over 40 days after 30 days of history (70 in all: less than the
    default protocol needs); every fraud incident labelled so every type shows up."""
    from fraudlab.datasets import SimulationConfig, simulate_world

    return simulate_world(SimulationConfig(accounts=200, days=40, seed=5, history_days=30,
                                           unlabeled_fraud_share=0))


@pytest.fixture
def world_dir(tmp_path, small_world):
    """The small world written as Parquet into a fresh folder the test may corrupt."""
    from fraudlab.features import write_tables

    out = tmp_path / "raw"
    write_tables(small_world.tables(), out, small_world.manifest)
    return out


@pytest.fixture(scope="session")
def labeled_dataset():
    """3,000 accounts over 85 days after 30 days of history, built as of mid-May so that
    every label has matured: about 131k transactions and 670 frauds, enough for two folds,
    calibration and test."""
    from fraudlab.datasets import SimulationConfig, simulate_world
    from fraudlab.features import build_dataset

    world = simulate_world(SimulationConfig(accounts=3000, days=85, seed=11, history_days=30))
    return build_dataset(world.tables(), pd.Timestamp("2026-05-15", tz="UTC"))


POSTGRES_URL = os.environ.get("FRAUDLAB_TEST_POSTGRES",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require_service(name: str, check) -> None:
    """Skip a test whose service is absent, with the reason; under CI (``CI=true``) the
    service must be there, so its absence fails the test instead."""
    try:
        check()
    except Exception as exc:  # any failure to reach the service
        message = f"{name} is not reachable: {type(exc).__name__}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    admin = POSTGRES_URL.replace("+psycopg", "")
    require_service("PostgreSQL", lambda: psycopg.connect(admin, connect_timeout=5).close())
    name = f"fraudlab_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'create database "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'drop database if exists "{name}" with (force)')


REDIS_URL = os.environ.get("FRAUDLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url():
    """The Redis server's URL and a key namespace of this test's own, deleted afterwards."""
    import uuid

    redis = pytest.importorskip("redis", reason="the serve extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    require_service("Redis", client.ping)
    namespace = f"fraudlab-test:{uuid.uuid4().hex[:10]}"
    try:
        yield REDIS_URL, namespace
    finally:
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's headless Chromium (``make test`` installs it)."""
    import shutil

    def found() -> None:
        if not (shutil.which("chromium") or shutil.which("chromium-browser")):
            raise FileNotFoundError("no chromium on PATH (`make test` installs Debian's package)")

    require_service("Chromium", found)
    return shutil.which("chromium") or shutil.which("chromium-browser")
