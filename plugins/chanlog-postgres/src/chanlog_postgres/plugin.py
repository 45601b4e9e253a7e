"""The plugin module the ``chanlog`` entry point names: registers the ``postgres`` backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog_postgres.backend import PostgresBackend

__all__ = ["chanlog_register_backends"]


@hookimpl
def chanlog_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`~chanlog_postgres.PostgresBackend` as backend ``postgres``."""
    register("postgres", PostgresBackend)
