"""Fixtures shared by the suites: a backend that counts the records it hands out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chanlog.backends.memory import MemoryBackend
from chanlog.records import StoredRecord


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
