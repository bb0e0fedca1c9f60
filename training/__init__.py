"""Training: configuration, search, fit, registry, the refresh cycle and the CLI.

Exports are loaded on first use so that the CLI's ``--help`` does not import the stack
(importing every module eagerly takes about a second and loads pandas, numba and
scikit-learn); the ``TYPE_CHECKING`` imports spell them out for IDEs and type checkers.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what IDEs and type checkers read; at run time, __getattr__ below
    from ._backtest import (
        BacktestResult,
        dataset_known_at,
        run_backtest,
    )
    from ._config import (
        DaskConfig,
        FraudlabConfig,
        PathsConfig,
        RefreshConfig,
        TrackingConfig,
        TrainingConfig,
        config_to_yaml,
        load_config,
    )
    from ._fit import (
        FittedModel,
        fit_final,
    )
    from ._pipeline import (
        ContractFailure,
        build_and_save,
        build_and_save_dask,
        dask_client,
        load_validated,
        read_dataset,
        read_for_training,
        replay_and_save,
    )
    from ._protocol import (
        Protocol,
        ProtocolError,
        build_protocol,
        sample_negatives,
    )
    from ._rebalance import (
        MissingAwareSMOTE,
        rebalance,
        rebalance_weighted,
    )
    from ._refresh import (
        RefreshLocked,
        RefreshOrderError,
        RefreshOutcome,
        refresh,
    )
    from ._registry import (
        UntrustedModel,
        load_registered,
        load_scorer,
        version_tiers,
    )
    from ._reporting import (
        write_model_report,
    )
    from ._study import (
        storage_url,
    )
    from ._train import (
        TrainingResult,
        train_model,
    )

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
    "build_and_save_dask": "._pipeline",
    "dask_client": "._pipeline",
    "DaskConfig": "._config",
    "build_protocol": "._protocol",
    "dataset_known_at": "._backtest",
    "fit_final": "._fit",
    "load_registered": "._registry",
    "load_validated": "._pipeline",
    "read_dataset": "._pipeline",
    "read_for_training": "._pipeline",
    "sample_negatives": "._protocol",
    "rebalance_weighted": "._rebalance",
    "replay_and_save": "._pipeline",
    "load_scorer": "._registry",
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
    "version_tiers": "._registry",
}

__all__ = [
    "BacktestResult",
    "ContractFailure",
    "DaskConfig",
    "FittedModel",
    "FraudlabConfig",
    "MissingAwareSMOTE",
    "PathsConfig",
    "Protocol",
    "ProtocolError",
    "RefreshConfig",
    "RefreshLocked",
    "RefreshOrderError",
    "RefreshOutcome",
    "TrackingConfig",
    "TrainingConfig",
    "TrainingResult",
    "UntrustedModel",
    "build_and_save",
    "build_and_save_dask",
    "build_protocol",
    "config_to_yaml",
    "dask_client",
    "dataset_known_at",
    "fit_final",
    "load_config",
    "load_registered",
    "load_scorer",
    "load_validated",
    "read_dataset",
    "read_for_training",
    "rebalance",
    "rebalance_weighted",
    "refresh",
    "replay_and_save",
    "run_backtest",
    "sample_negatives",
    "storage_url",
    "train_model",
    "version_tiers",
    "write_model_report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
