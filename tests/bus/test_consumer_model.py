"""The model-based test of durable consumers (:mod:`bus.consumer_model`) on the memory
backend (a :class:`~chanlog.testing.FlakyBackend`) and on SQLite (a file of each run's own).
The PostgreSQL plugin's tests run the same machine on a schema of each run's own."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis.stateful import run_state_machine_as_test

import chanlog
from bus.consumer_model import Faults, machine, model_settings
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing import FlakyBackend


def open_memory() -> tuple[chanlog.EventStore, Faults, Callable[[], None]]:
    backend = FlakyBackend()
    faults = Faults(backend)
    store = chanlog.EventStore(backend, projections=[], snapshot_policy="never")
    return store, faults, lambda: None


def open_sqlite() -> tuple[chanlog.EventStore, Faults, Callable[[], None]]:
    directory = Path(tempfile.mkdtemp(prefix="chanlog-model-"))
    backend = SqliteBackend(directory / "log.db")
    faults = Faults(backend)
    store = chanlog.EventStore(backend, projections=[], snapshot_policy="never")
    return store, faults, lambda: shutil.rmtree(directory, ignore_errors=True)


def test_durable_consumers_never_skip_a_record_on_memory() -> None:
    run_state_machine_as_test(machine(open_memory), settings=model_settings(200, 50))


def test_durable_consumers_never_skip_a_record_on_sqlite() -> None:
    run_state_machine_as_test(machine(open_sqlite), settings=model_settings(60, 40))
