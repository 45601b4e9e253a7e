"""Access to chanlog features built in parallel with the benchmarks (sqlite backend,
reconstruction, snapshots, the postgres plugin), each raising :class:`Unavailable` with a
clear reason when the running checkout does not have it yet, so its rows are skipped
with that reason instead of failing the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.plugins import default_host

__all__ = [
    "POSTGRES_DSN",
    "Unavailable",
    "open_store",
    "postgres_backend",
    "reconstruct",
    "sqlite_backend",
    "sqlite_store",
]

POSTGRES_DSN = os.environ.get(
    "CHANLOG_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


class Unavailable(Exception):
    """A feature this checkout does not provide (yet)."""


def sqlite_backend(path: Path, durability: str = "full") -> Backend:
    """The registered ``sqlite`` backend on ``path``."""
    host = default_host()
    if "sqlite" not in host.backends:
        raise Unavailable("no 'sqlite' backend is registered")
    backend: Backend = host.lookup("backends", "sqlite")(path=str(path), durability=durability)
    return backend


def open_store(backend: Backend, *, snapshots: bool) -> EventStore:
    """A store with the default projections on ``backend``, taking snapshots with the
    ``every-n-events`` policy (default n) when ``snapshots``, else never."""
    return EventStore(backend, snapshot_policy="every-n-events" if snapshots else "never")


def sqlite_store(path: Path, durability: str = "full", **options: Any) -> EventStore:
    """An :class:`EventStore` on the sqlite backend with default projections."""
    return EventStore(sqlite_backend(path, durability), **options)


def postgres_backend(schema: str, *, fresh: bool = True) -> Backend:
    """The postgres plugin's backend on ``schema`` of :data:`POSTGRES_DSN`, dropped first
    when ``fresh``."""
    try:
        from chanlog_postgres import PostgresBackend  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise Unavailable(f"chanlog_postgres is not importable ({exc})") from None
    try:
        import psycopg  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise Unavailable(f"psycopg is not importable ({exc})") from None
    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            if fresh:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except Exception as exc:
        raise Unavailable(f"postgres at {POSTGRES_DSN} is not reachable ({exc})") from None
    backend: Backend = PostgresBackend(dsn=POSTGRES_DSN, schema=schema)
    return backend


def reconstruct(store: EventStore, entity_id: str, at: int, *, snapshots: bool) -> Any:
    """The channel's state after the events with offset < ``at``: from the nearest
    snapshot when ``snapshots``, else folded from the channel's first event."""
    if snapshots:
        return store.reconstruct("channel", entity_id, at=at)
    try:
        from chanlog.reconstruct import StateReconstructor
    except ImportError as exc:
        raise Unavailable(f"chanlog.reconstruct is not importable ({exc})") from None
    return StateReconstructor(store, use_snapshots=False).reconstruct("channel", entity_id, at)
