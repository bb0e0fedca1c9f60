"""Optional dependencies, imported where used, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``pip install 'fraudlab[extra]'``.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"duckdb"``.
    extra : str
        The extra of fraudlab that installs it, e.g. ``"sql"``.
    purpose : str
        What needs it, for the message (``"sources.format 'duckdb'"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{purpose} needs the {module} package, which is not installed: "
                           f"pip install 'fraudlab[{extra}]'") from None
