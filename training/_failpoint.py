"""Failpoints: named places where a crash test kills the process, as a power cut would.

``FRAUDLAB_FAILPOINT=<name>`` in the environment makes :func:`failpoint` send SIGKILL to
its own process when it reaches the place of that name. Without the variable it does
nothing. The refresh's crash-consistency tests use it to kill a refresh at each of its
steps and check that a re-run ends exactly as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal

ENV = "FRAUDLAB_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here (SIGKILL, no clean-up) when ``$FRAUDLAB_FAILPOINT`` names this place."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
