"""Training: configuration, search, fit, registry, the refresh cycle and the CLI."""

from ._config import FraudlabConfig, PathsConfig, TrackingConfig, config_to_yaml, load_config

__all__ = ["FraudlabConfig", "PathsConfig", "TrackingConfig", "config_to_yaml", "load_config"]
