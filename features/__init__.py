"""Features: raw-data sources and column mapping, the simulated world, feature pipelines."""

from ._config import SimulationConfig, SourcesConfig
from ._simulator import FRAUD_TYPES, SimulatedWorld, simulate_world
from ._sources import RawData, SourceError, load_raw, normalise_table, write_tables

__all__ = [
    "FRAUD_TYPES",
    "RawData",
    "SourceError",
    "SimulatedWorld",
    "SimulationConfig",
    "SourcesConfig",
    "load_raw",
    "normalise_table",
    "simulate_world",
    "write_tables",
]
