"""Datasets: the simulated payments world and the card-fraud handbook's public dataset,
re-created offline (no download), as ``imblearn.datasets`` and ``skrub.datasets`` hold
theirs."""

from ._config import SimulationConfig
from ._handbook import HANDBOOK_SOURCES, handbook_transactions
from ._shards import merge_manifests, simulate_shards
from ._simulator import FRAUD_TYPES, SimulatedWorld, simulate_world

__all__ = [
    "FRAUD_TYPES",
    "HANDBOOK_SOURCES",
    "SimulatedWorld",
    "SimulationConfig",
    "handbook_transactions",
    "merge_manifests",
    "simulate_shards",
    "simulate_world",
]
