"""Features: raw-data sources and column mapping, the simulated world, feature pipelines."""

from ._catalog import (
    CATALOG,
    WINDOWS,
    Feature,
    catalog_frame,
    catalog_markdown,
    catalog_version,
    feature_names,
)
from ._config import FeaturesConfig, SimulationConfig, SourcesConfig
from ._dataset import (
    LABEL,
    METADATA,
    DatasetContractError,
    build_dataset,
    dataset_schema,
    split_features,
)
from ._engine import compute_features
from ._public import HANDBOOK_SOURCES, handbook_transactions
from ._simulator import FRAUD_TYPES, SimulatedWorld, simulate_world
from ._sources import (
    RawData,
    SourceError,
    expand_env,
    known_at,
    load_raw,
    normalise_table,
    write_tables,
)

__all__ = [
    "CATALOG",
    "FRAUD_TYPES",
    "HANDBOOK_SOURCES",
    "LABEL",
    "METADATA",
    "WINDOWS",
    "DatasetContractError",
    "Feature",
    "FeaturesConfig",
    "RawData",
    "SourceError",
    "SimulatedWorld",
    "SimulationConfig",
    "SourcesConfig",
    "available_features",
    "build_dataset",
    "catalog_frame",
    "catalog_markdown",
    "catalog_version",
    "compute_features",
    "dataset_schema",
    "expand_env",
    "feature_names",
    "handbook_transactions",
    "known_at",
    "load_raw",
    "normalise_table",
    "simulate_world",
    "split_features",
    "write_tables",
]
