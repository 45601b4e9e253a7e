"""The model-based test of the store (:mod:`core.store_model`) on the memory backend and on
an SQLite file; the PostgreSQL run is in plugins/chanlog-postgres/tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from core.store_model import StoreModel

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class MemoryStoreModel(StoreModel):
    """One memory backend, reopened by a new store on it (it keeps its records)."""

    def open_backend(self) -> Backend:
        if not hasattr(self, "backend"):
            self.backend = MemoryBackend()
        return self.backend


class SqliteStoreModel(StoreModel):
    """One SQLite file, written by two stores (two processes) and reopened."""

    shared = True

    def open_backend(self) -> Backend:
        if not hasattr(self, "directory"):
            self.directory = Path(tempfile.mkdtemp(prefix="chanlog-model-"))
        return SqliteBackend(self.directory / "log.db", durability="normal")

    def discard_log(self) -> None:
        if hasattr(self, "directory"):
            shutil.rmtree(self.directory, ignore_errors=True)


def test_the_store_on_memory_agrees_with_its_model() -> None:
    run_state_machine_as_test(MemoryStoreModel, settings=SETTINGS)


def test_the_store_on_sqlite_agrees_with_its_model() -> None:
    run_state_machine_as_test(SqliteStoreModel, settings=SETTINGS)


def test_a_prefix_longer_than_its_script_appends_the_whole_script() -> None:
    """Seed 12's script holds 18 events; a prefix of 40 drawn with it once hung the run."""
    machine = MemoryStoreModel()
    try:
        machine.configure(seed=12, n=3, keep=1, incremental=False, every=2, prefix=40, chunk=8)
        assert machine.cursor == len(machine.script) == 18
        machine.lengths_agree()
        machine.folded_state_agrees()
    finally:
        machine.teardown()
