"""A chanlog plugin for the bus's process tests: the ``probe`` handler.

The tests put this module and a ``*.dist-info`` naming it as a ``chanlog`` entry point on the
``PYTHONPATH`` of the processes they start (see :func:`bus.processes.plugin_site`), so the
installed ``chanlog`` console script loads it like any third-party plugin.

``probe`` appends to its side file, for every record it is handed, a line ``B offset pid
time`` when the handling begins and ``E offset pid time`` when it is done (``time`` is
``time.monotonic()``, one clock for every process of the machine). Each line is one
``write`` on a file opened with ``O_APPEND``: a process killed with SIGKILL leaves whole
lines behind (the kernel keeps what was written; only a machine crash would need an
fsync, which ``fsync = true`` adds).

Options (``[consumers.NAME]`` keys): ``path`` (the side file), ``fail_on`` (offsets whose
handling raises, every time), ``pause_ms`` (time each handling takes), ``fsync``,
``fail_to_start`` (binding to the store raises: the consumer's thread dies).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog.records import RecordedEvent


class Probe:
    """Records what it handles and when (see the module)."""

    def __init__(
        self,
        *,
        path: str,
        fail_on: list[int] | None = None,
        pause_ms: int = 0,
        fsync: bool = False,
        fail_to_start: bool = False,
    ) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fail_on = frozenset(fail_on or ())
        self._pause = pause_ms / 1000
        self._fsync = fsync
        self._pid = os.getpid()
        self._fail_to_start = fail_to_start

    def bind(self, store: Any, consumer: str) -> None:
        """Refuse to start when told to."""
        if self._fail_to_start:
            raise RuntimeError(f"probe {consumer} refuses to start")

    def _line(self, kind: str, offset: int) -> None:
        os.write(self._fd, f"{kind} {offset} {self._pid} {time.monotonic():.6f}\n".encode())
        if self._fsync:
            os.fsync(self._fd)

    def __call__(self, record: RecordedEvent) -> None:
        self._line("B", record.offset)
        if self._pause:
            time.sleep(self._pause)
        if record.offset in self._fail_on:
            raise RuntimeError(f"probe refuses offset {record.offset}")
        self._line("E", record.offset)

    def close(self) -> None:
        """Close the side file."""
        os.close(self._fd)


def probe(**options: Any) -> Probe:
    """The ``probe`` handler's factory."""
    return Probe(**options)


probe.path_options = ("path",)  # type: ignore[attr-defined]


@hookimpl
def chanlog_register_handlers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``probe``."""
    register("probe", probe)
