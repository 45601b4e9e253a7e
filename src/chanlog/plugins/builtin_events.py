"""Built-in plugin: the 21 event types of the catalog."""

from __future__ import annotations

from collections.abc import Callable

from chanlog.events import BUILTIN_EVENT_TYPES, Event
from chanlog.plugins.hookspecs import hookimpl


@hookimpl
def chanlog_register_event_types(register: Callable[[type[Event]], None]) -> None:
    for cls in BUILTIN_EVENT_TYPES:
        register(cls)
