"""Training: configuration, search, fit, registry, the refresh cycle and the CLI.

Exports are loaded on first use so that the CLI's ``--help`` does not import the stack.
"""

from importlib import import_module

_EXPORTS = {
    "BacktestResult": "._backtest",
    "ContractFailure": "._pipeline",
    "FittedModel": "._fit",
    "FraudlabConfig": "._config",
    "MissingAwareSMOTE": "._rebalance",
    "Protocol": "._protocol",
    "TrainingConfig": "._config",
    "TrainingResult": "._train",
    "build_and_save": "._pipeline",
    "build_protocol": "._protocol",
    "dataset_known_at": "._backtest",
    "fit_final": "._fit",
    "load_registered": "._registry",
    "load_validated": "._pipeline",
    "read_dataset": "._pipeline",
    "rebalance": "._rebalance",
    "refresh": "._refresh",
    "run_backtest": "._backtest",
    "write_model_report": "._reporting",
    "storage_url": "._study",
    "train_model": "._train",
    "PathsConfig": "._config",
    "RefreshConfig": "._config",
    "RefreshLocked": "._refresh",
    "RefreshOutcome": "._refresh",
    "TrackingConfig": "._config",
    "ProtocolError": "._protocol",
    "RefreshOrderError": "._refresh",
    "UntrustedModel": "._registry",
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
