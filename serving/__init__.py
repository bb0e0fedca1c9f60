"""Serving: score payments one at a time with a registered model and its own features,
behind an HTTP service that loses no accepted event."""

from ._app import create_app
from ._config import ServingConfig
from ._schema import Decision, row_model
from ._scorer import Score, Scorer
from ._service import DuplicateTransaction, RiskService, purge_decisions, read_decisions
from ._store import FileStore, RedisStore, StoreBusy

__all__ = [
    "Decision",
    "DuplicateTransaction",
    "FileStore",
    "RedisStore",
    "RiskService",
    "Score",
    "Scorer",
    "ServingConfig",
    "StoreBusy",
    "create_app",
    "purge_decisions",
    "read_decisions",
    "row_model",
]
