"""Fixtures shared by the suites: a backend that counts the records it hands out, and a
third-party plugin installed as a distribution (see ``installed_plugins``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chanlog.backends.memory import MemoryBackend
from chanlog.plugins import reset_default_host
from chanlog.records import StoredRecord
from installed_plugins import MODULE, InstallPlugin, install_into


class CountingBackend(MemoryBackend):
    """A memory backend that counts the records it hands out, by kind of read."""

    def __init__(self) -> None:
        super().__init__()
        self.log_reads = 0
        self.stream_reads = 0

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        for record in super().read(start, end):
            self.log_reads += 1
            yield record

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        for record in super().read_stream(stream, start, end):
            self.stream_reads += 1
            yield record

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        for entry in super().read_stream_payloads(stream, start, end):
            self.stream_reads += 1
            yield entry


@pytest.fixture
def counting_backend() -> CountingBackend:
    """A fresh counting backend."""
    return CountingBackend()


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallPlugin]:
    """``install_plugin(source)``: the distribution ``chanlog-fault-plugin``, whose entry
    point ``fault`` is the module ``chanlog_fault_plugin`` holding ``source``, installed
    in ``tmp_path / "site"`` (on ``sys.path`` for the test); returns that folder."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    for name in ("CHANLOG_LOAD_PLUGINS", "CHANLOG_DISABLE_PLUGINS", "CHANLOG_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    def install(source: str) -> Path:
        return install_into(site, source)

    yield install
    sys.modules.pop(MODULE, None)
    reset_default_host()
