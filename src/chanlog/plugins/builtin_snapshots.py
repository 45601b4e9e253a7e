"""Built-in plugin: the ``every-n-events`` and ``never`` snapshot policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog.snapshots.policies import EveryNEvents, Never


@hookimpl
def chanlog_register_snapshot_policies(
    register: Callable[[str, Callable[..., Any]], None],
) -> None:
    """Register the built-in policies; each class is its own factory."""
    register(EveryNEvents.name, EveryNEvents)
    register(Never.name, Never)
