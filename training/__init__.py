"""Training: configuration, search, fit, registry, the refresh cycle and the CLI.

Exports are loaded on first use so that the CLI's ``--help`` does not import the stack.
"""

from importlib import import_module

_EXPORTS = {
    "FittedModel": "._fit",
    "FraudlabConfig": "._config",
    "MissingAwareSMOTE": "._rebalance",
    "Protocol": "._protocol",
    "TrainingConfig": "._config",
    "TrainingResult": "._train",
    "build_protocol": "._protocol",
    "fit_final": "._fit",
    "rebalance": "._rebalance",
    "storage_url": "._study",
    "train_model": "._train",
    "PathsConfig": "._config",
    "TrackingConfig": "._config",
    "config_to_yaml": "._config",
    "load_config": "._config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
