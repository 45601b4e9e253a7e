"""The capability protocols: which built-in backend has which (the table in
chanlog.backends.capabilities, consumer_store's protocols included), and the per-class cache
the store resolves transactions with."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from chanlog.backends import capabilities
from chanlog.backends.capabilities import (
    AppendsUnlessKnown,
    CountsStreams,
    ExposesStreamIndex,
    FileBacked,
    FindsMany,
    GroupsCommits,
    MayBeReadOnly,
    ReadsStreamPayloads,
    RemembersHead,
    SavesSnapshotsInTransaction,
    TransactionCapabilities,
    appends_unless_known,
    finds_many,
    saves_snapshots_in_transaction,
    transaction_capabilities,
)
from chanlog.backends.consumer_store import (
    KeepsConsumers,
    KeepsConsumersThrough,
    MovesConsumersInTransaction,
    ReadsConsumerClock,
)
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend

BACKEND_CAPABILITIES = (
    ReadsStreamPayloads,
    ExposesStreamIndex,
    CountsStreams,
    RemembersHead,
    FileBacked,
    MayBeReadOnly,
    KeepsConsumers,
    ReadsConsumerClock,
    GroupsCommits,
)


def _declared(backend: object) -> set[str]:
    return {protocol.__name__ for protocol in BACKEND_CAPABILITIES if isinstance(backend, protocol)}


def test_the_memory_backend_has_what_the_table_says() -> None:
    backend = MemoryBackend()
    assert _declared(backend) == {
        "ReadsStreamPayloads",
        "ExposesStreamIndex",
        "MayBeReadOnly",
        "KeepsConsumers",
        "ReadsConsumerClock",
    }
    with backend.write() as transaction:
        assert transaction_capabilities(transaction) == TransactionCapabilities(
            finds_many=False,
            appends_unless_known=True,
            saves_snapshots=True,
            deletes_snapshots=True,
        )
        assert isinstance(transaction, MovesConsumersInTransaction)


def test_the_sqlite_backend_has_what_the_table_says(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        assert _declared(backend) == {
            "ReadsStreamPayloads",
            "ExposesStreamIndex",
            "RemembersHead",
            "FileBacked",
            "MayBeReadOnly",
            "KeepsConsumers",
            "ReadsConsumerClock",
            "GroupsCommits",
        }
        with backend.write() as transaction:
            assert transaction_capabilities(transaction) == TransactionCapabilities(
                finds_many=True,
                appends_unless_known=True,
                saves_snapshots=True,
                deletes_snapshots=True,
            )
            assert isinstance(transaction, MovesConsumersInTransaction)
    finally:
        backend.close()


def test_the_table_in_the_docstring_lists_every_protocol() -> None:
    doc = capabilities.__doc__ or ""
    for name in capabilities.__all__:
        protocol = getattr(capabilities, name)
        if getattr(protocol, "_is_protocol", False):
            assert f"| `{name}` |" in doc, name
            assert protocol.__doc__ and "Fallback" in protocol.__doc__, name
    # The consumers' protocols live in consumer_store (whose docstring says what happens
    # without them); the table lists them too.
    for protocol in (KeepsConsumers, MovesConsumersInTransaction, ReadsConsumerClock):
        assert f"| `{protocol.__name__}` | yes | yes | yes |" in doc, protocol.__name__


def test_a_consumer_table_without_a_clock_tells_the_local_time() -> None:
    # A table written before tables told the time: its backend answers by this machine's.
    class Backend(KeepsConsumersThrough):
        consumer_table = object()  # type: ignore[assignment]

    before = time.time()
    assert before <= Backend().consumer_clock() <= time.time()


class _Finder:
    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        return [None] * len(event_ids)


class _Plain:
    pass


def test_transaction_capabilities_are_resolved_once_per_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capabilities, "_BY_CLASS", {})
    checks: list[object] = []
    real = isinstance

    def counting(value: object, kinds: object) -> bool:
        if kinds is FindsMany:
            checks.append(value)
        return real(value, kinds)  # type: ignore[arg-type]

    monkeypatch.setattr(capabilities, "isinstance", counting, raising=False)
    first, second = _Finder(), _Finder()
    assert finds_many(first)
    assert finds_many(second)
    assert not appends_unless_known(first)
    assert not saves_snapshots_in_transaction(first)
    assert checks == [first]  # the second instance of the class was answered from the cache
    assert not finds_many(_Plain())
    assert not isinstance(_Plain(), FindsMany | AppendsUnlessKnown | SavesSnapshotsInTransaction)
