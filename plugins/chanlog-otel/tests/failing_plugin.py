"""A chanlog plugin for the metrics test's ``chanlog run``: the ``fail-on`` handler, which
raises on the offsets it is given and handles every other record, taking ``pause_ms`` for
each (so that a scrape can see the consumer behind).

The test puts this module and a ``*.dist-info`` naming it as a ``chanlog`` entry point on the
``PYTHONPATH`` of the process it starts, so the console script loads it like any plugin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog.records import RecordedEvent


class FailOn:
    """Raises on the records at ``offsets``."""

    def __init__(self, *, offsets: list[int], pause_ms: int = 0) -> None:
        self._offsets = frozenset(offsets)
        self._pause = pause_ms / 1000

    def __call__(self, record: RecordedEvent) -> None:
        time.sleep(self._pause)
        if record.offset in self._offsets:
            raise RuntimeError(f"fail-on: offset {record.offset}")


@hookimpl
def chanlog_register_handlers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`FailOn` as ``fail-on``."""
    register("fail-on", FailOn)
