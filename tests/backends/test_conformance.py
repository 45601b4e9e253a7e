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

    @pytest.fixture
    def open_read_only(self) -> OpenBackend:
        return lambda: MemoryBackend(read_only=True)


class TestSqliteBackend(BackendConformance):
    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db")

    @pytest.fixture
    def open_read_only(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db", read_only=True)


class TestSqliteBackendNormalDurability(BackendConformance):
    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db", durability="normal")

    @pytest.fixture
    def open_read_only(self, tmp_path: Path) -> OpenBackend:
        return lambda: SqliteBackend(tmp_path / "log.db", durability="normal", read_only=True)
