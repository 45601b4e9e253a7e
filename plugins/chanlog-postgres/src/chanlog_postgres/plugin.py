"""The plugin module the ``chanlog`` entry point names: registers the ``postgres`` backend.

Registered lazily: loading the plugin (which every ``chanlog`` command and every
``chanlog.open`` does) must not import psycopg, a quarter of a second of start-up that
only a store on PostgreSQL needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins import LazyBackendFactory
from chanlog.plugins.hookspecs import hookimpl

__all__ = ["chanlog_register_backends"]


@hookimpl
def chanlog_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`~chanlog_postgres.PostgresBackend` as backend ``postgres``."""
    register("postgres", LazyBackendFactory("chanlog_postgres.backend:PostgresBackend"))
