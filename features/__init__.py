"""Features: raw-data sources and column mapping, feature declarations and the engine that
computes them, and the labeled dataset. The simulated world moved to :mod:`fraudlab.datasets`."""

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
from ._config import FeaturesConfig, SourcesConfig
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
from ._distributed import PartitionedDataset, RawContractError, build_dataset_dask
from ._engine import compute_features
from ._online import OnlineFeatures, event_stream, replay
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
    "LABEL",
    "METADATA",
    "OnlineFeatures",
    "PartitionedDataset",
    "RawContractError",
    "ColumnSpec",
    "DatasetContractError",
    "DeclarationError",
    "Feature",
    "FeatureSet",
    "FeaturesConfig",
    "RawData",
    "SourceError",
    "SourcesConfig",
    "available_features",
    "build_dataset",
    "build_dataset_dask",
    "catalog_frame",
    "catalog_markdown",
    "catalog_version",
    "compute_features",
    "dataset_features",
    "dataset_schema",
    "dump_features",
    "event_stream",
    "expand_env",
    "feature_names",
    "feature_settings",
    "features_from_dict",
    "known_at",
    "load_features",
    "load_raw",
    "normalise_table",
    "replay",
    "resolve_features",
    "split_features",
    "write_tables",
]

# Moved to fraudlab.datasets in 0.2; the old names stay for one release, with a warning.
_MOVED = {"FRAUD_TYPES", "HANDBOOK_SOURCES", "SimulatedWorld", "SimulationConfig",
          "handbook_transactions", "simulate_world"}


def __getattr__(name: str):
    if name in _MOVED:
        import warnings

        import fraudlab.datasets

        warnings.warn(f"fraudlab.features.{name} moved to fraudlab.datasets.{name}; the old "
                      "name will be removed in fraudlab 0.3", DeprecationWarning, stacklevel=2)
        return getattr(fraudlab.datasets, name)
    raise AttributeError(f"module 'fraudlab.features' has no attribute {name!r}")
