"""Features: raw-data sources and column mapping, the simulated world, feature declarations
and the engine that computes them."""

from ._catalog import (
    BUILTIN,
    CATALOG,
    catalog_frame,
    catalog_markdown,
    catalog_version,
    feature_names,
    feature_settings,
    resolve_features,
)
from ._config import FeaturesConfig, SimulationConfig, SourcesConfig
from ._dataset import (
    LABEL,
    METADATA,
    DatasetContractError,
    available_features,
    build_dataset,
    dataset_features,
    dataset_schema,
    split_features,
)
from ._declarations import (
    AGGS,
    ColumnSpec,
    DeclarationError,
    Feature,
    FeatureSet,
    dump_features,
    features_from_dict,
    load_features,
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
    "AGGS",
    "BUILTIN",
    "CATALOG",
    "FRAUD_TYPES",
    "HANDBOOK_SOURCES",
    "LABEL",
    "METADATA",
    "ColumnSpec",
    "DatasetContractError",
    "DeclarationError",
    "Feature",
    "FeatureSet",
    "FeaturesConfig",
    "RawData",
    "SimulatedWorld",
    "SimulationConfig",
    "SourceError",
    "SourcesConfig",
    "available_features",
    "build_dataset",
    "catalog_frame",
    "catalog_markdown",
    "catalog_version",
    "compute_features",
    "dataset_features",
    "dataset_schema",
    "dump_features",
    "expand_env",
    "feature_names",
    "feature_settings",
    "features_from_dict",
    "handbook_transactions",
    "known_at",
    "load_features",
    "load_raw",
    "normalise_table",
    "resolve_features",
    "simulate_world",
    "split_features",
    "write_tables",
]
