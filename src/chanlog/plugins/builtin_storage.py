"""Built-in plugin: the ``memory`` and ``sqlite`` backends and the ``json`` serializer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.plugins.hookspecs import hookimpl
from chanlog.serializers import JsonSerializer


@hookimpl
def chanlog_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("memory", MemoryBackend)
    register("sqlite", SqliteBackend)


@hookimpl
def chanlog_register_serializers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    register("json", JsonSerializer)
