"""Worlds larger than one process holds: independent shards of accounts, one at a time.

A shard is a world of its own (``simulate_world`` on ``shard_accounts`` accounts, with
a seed derived from the world's seed and the shard's number) whose identifiers carry the
shard's prefix (``S0003-A0000216``), so shards never share an account, device, merchant
or transaction. The world is defined by its seed and shard size alone: the same seed and
shard size give the same data however many shards are held, written or read at a time,
and memory is that of one shard. Fraud rings, mules and merchants do not cross shards,
which is the one way such a world differs from one simulated whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from ._config import SimulationConfig
from ._simulator import SimulatedWorld, simulate_world

# Identifier columns that get the shard's prefix (an IP address stays as it is: two shards
# may share one, as unrelated customers behind one carrier address do).
_ID_COLUMNS = {
    "transactions": ("tx_id", "account_id", "counterparty_id", "merchant_id", "device_id"),
    "labels": ("tx_id",),
    "events": ("event_id", "account_id", "device_id"),
    "accounts": ("account_id",),
}


def shard_seed(seed: int, shard: int) -> int:
    """The seed of one shard: independent streams for every (seed, shard)."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def _prefixed(frame: pd.DataFrame, columns, prefix: str) -> pd.DataFrame:
    out = frame.copy(deep=False)
    for c in columns:
        s = frame[c]
        out[c] = (prefix + s).where(s.notna())
    return out


def simulate_shards(config: SimulationConfig | None = None, *,
                    shard_accounts: int = 20_000) -> Iterator[tuple[int, SimulatedWorld]]:
    """The shards of a world of ``config.accounts`` accounts, one at a time.

    Parameters
    ----------
    config : SimulationConfig, optional
        The world: ``accounts`` in all, its period, fraud settings and seed.
    shard_accounts : int
        Accounts per shard (the last one may hold fewer): the memory bound, and part of
        the world's definition.

    Yields
    ------
    (int, SimulatedWorld)
        The shard's number and its tables, identifiers prefixed ``S{shard:04d}-``.
    """
    config = config or SimulationConfig()
    if shard_accounts < 10:
        raise ValueError("shard_accounts must be at least 10")
    n = -(-config.accounts // shard_accounts)
    for s in range(n):
        accounts = min(shard_accounts, config.accounts - s * shard_accounts)
        cfg = config.model_copy(update={"accounts": max(accounts, 10),
                                        "seed": shard_seed(config.seed, s)})
        world = simulate_world(cfg)
        prefix = f"S{s:04d}-"
        tables = {name: _prefixed(frame, _ID_COLUMNS.get(name, ()), prefix)
                  for name, frame in world.tables().items()}
        bl = tables["blacklist"]
        listed = bl["entity_type"].isin(["account", "device", "merchant", "counterparty"])
        value = bl["entity_value"]
        tables["blacklist"] = bl.assign(entity_value=value.where(~listed, prefix + value))
        manifest = {**world.manifest, "shard": s, "shards": n, "shard_accounts": shard_accounts,
                    "seed": config.seed}
        yield s, SimulatedWorld(**tables, manifest=manifest)


def merge_manifests(manifests: list[dict], config: SimulationConfig) -> dict:
    """One manifest for the shards of a world: rows and fraud counts summed."""
    rows: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for m in manifests:
        for k, v in m["rows"].items():
            rows[k] = rows.get(k, 0) + v
        for k, v in m["fraud"]["transactions_by_type"].items():
            by_type[k] = by_type.get(k, 0) + v
    first = manifests[0]
    return {"generator": "fraudlab.datasets.simulate_shards",
            "config": config.model_dump(mode="json"), "shards": len(manifests),
            "shard_accounts": first["shard_accounts"], "period": first["period"], "rows": rows,
            "fraud": {"transactions_by_type": by_type,
                      "fraud_rate": round(sum(by_type.values()) / max(1, rows["transactions"]), 6)}}
