"""The built-in backends run the conformance suite of chanlog.testing."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing import BackendConformance, OpenBackend


class TestMemoryBackend(BackendConformance):
    durable = False

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        return MemoryBackend


class TestSqliteBackend(BackendConformance):
    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db")


class TestSqliteBackendNormalDurability(BackendConformance):
    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db", durability="normal")
