"""Built-in plugin: the ``objective``, ``channel`` and ``messages`` projections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog.projections.channel import ChannelProjection
from chanlog.projections.messages import MessagesProjection
from chanlog.projections.objective import ObjectiveProjection


@hookimpl
def chanlog_register_projections(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register the three built-in projections, each class being its own factory."""
    register(ObjectiveProjection.name, ObjectiveProjection)
    register(ChannelProjection.name, ChannelProjection)
    register(MessagesProjection.name, MessagesProjection)
