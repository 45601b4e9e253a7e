"""A projection written only against the public Projection protocol (as the plugin guide
shows it: no base class, no optional capability) gets checkpoints, snapshots, time travel
and ``chanlog show``; one that lacks a member is refused, naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from chanlog import Event, InvalidTransition, fields, hookimpl
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import PluginError
from chanlog.plugins.host import PluginHost
from chanlog.reconstruct import StateReconstructor
from chanlog.store import EventStore

CHANNEL = "0x" + "cc" * 32
OTHER = "0x" + "dd" * 32
ETH = "0x" + "00" * 20


@attrs.define(frozen=True, slots=True, kw_only=True)
class TipPaid(Event):
    """A tip of ``amount`` paid on ``channel_id``."""

    event_type: ClassVar[str] = "test-tip-paid"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)

    channel_id: str = attrs.field(validator=fields.bytes32)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)


class TipsStage:
    def __init__(self, projection: TipsProjection) -> None:
        self._projection = projection
        self._pending: dict[str, int] = {}

    def apply(self, event: Event, offset: int) -> None:
        for channel in self._projection.entity_ids(event):
            current = self._pending.get(channel, self._projection.get(channel))
            self._pending[channel] = self._projection.fold(current, event, channel, offset)

    def commit(self) -> None:
        self._projection.totals.update(self._pending)


class TipsProjection:
    """Exactly the members the guide lists, nothing more."""

    name = "tips"
    schema_version = 1

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def stage(self) -> TipsStage:
        return TipsStage(self)

    def get(self, entity_id: str) -> int | None:
        return self.totals.get(entity_id.lower())

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        return event.streams if isinstance(event, TipPaid) else ()

    def fold(self, state: int | None, event: Event, entity_id: str, offset: int) -> int:
        assert isinstance(event, TipPaid)
        if event.amount == 0:
            raise InvalidTransition(
                "tips must be positive",
                kind="tips",
                entity_id=entity_id,
                event_type=event.event_type,
                rule="tip must be positive",
            )
        return (state or 0) + event.amount

    def dump(self) -> dict[str, str]:
        return {channel: str(total) for channel, total in self.totals.items()}

    def load(self, data: dict[str, str]) -> None:
        self.totals = {channel: int(total) for channel, total in data.items()}

    def __len__(self) -> int:
        return len(self.totals)


class TipsPlugin:
    @hookimpl
    def chanlog_register_event_types(self, register: Any) -> None:
        register(TipPaid)

    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        register("tips", TipsProjection)


def _host() -> PluginHost:
    host = PluginHost(load_entry_points=False)
    host.register(TipsPlugin(), name="tips")
    return host


def _tips(count: int, channel: str = CHANNEL, start: int = 1) -> list[TipPaid]:
    return [
        TipPaid(channel_id=channel, amount=number, timestamp_ms=number)
        for number in range(start, start + count)
    ]


def test_it_gets_checkpoints_from_the_store() -> None:
    with EventStore(plugins=_host(), projections=["tips"], checkpoint_every=8) as store:
        for tip in _tips(50):
            store.append(tip)
        assert len(store.checkpoints) == 50 // 8  # one every 8 events of the channel
        cold = StateReconstructor(store, use_snapshots=False)
        warm = store.reconstructor
        for at in range(1, 51):
            expected = sum(range(1, at + 1))
            before = warm.folded_count
            assert store.reconstruct("tips", CHANNEL, at=at) == expected
            assert cold.reconstruct("tips", CHANNEL, at=at) == expected
            assert warm.folded_count - before <= 8


def test_it_is_snapshotted_restored_and_time_travels(tmp_path: Path) -> None:
    path = tmp_path / "tips.db"
    host = _host()
    with EventStore(SqliteBackend(path), plugins=host, projections=["tips"]) as store:
        store.append_batch(_tips(10) + _tips(3, OTHER))
        snapshot = store.snapshot()
        store.append_batch(_tips(5, start=11))
        with pytest.raises(InvalidTransition):
            store.append(TipPaid(channel_id=CHANNEL, amount=0, timestamp_ms=99))
    reopened = EventStore(SqliteBackend(path), plugins=host, projections=["tips"])
    with reopened:
        assert reopened.snapshots.opened_count == 1  # restored from the snapshot
        assert reopened.state("tips", CHANNEL) == sum(range(1, 16))
        assert reopened.reconstruct("tips", CHANNEL, at=snapshot.offset) == sum(range(1, 11))
        assert reopened.reconstruct("tips", OTHER, at=snapshot.offset + 2) == 6
        assert reopened.verify() == len(reopened)


def test_show_prints_the_state_of_a_projection_stored_whole() -> None:
    with EventStore(MemoryBackend(), plugins=_host(), projections=["tips"]) as store:
        store.append_batch(_tips(4))
        store.snapshot()
        state_data = store.reconstructor.state_data
        assert state_data("tips", CHANNEL, 2) == 1 + 2
        assert json.loads(json.dumps(state_data("tips", CHANNEL))) == 10


class Incomplete:
    name = "incomplete"
    schema_version = 1

    def stage(self) -> Any: ...

    def get(self, entity_id: str) -> Any: ...

    def fold(self, state: Any, event: Event, entity_id: str, offset: int) -> Any: ...


class IncompletePlugin:
    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        register("incomplete", Incomplete)


def test_a_projection_missing_members_is_refused_naming_them() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(IncompletePlugin(), name="incomplete")
    with pytest.raises(PluginError, match="entity_ids, dump, load, __len__"):
        EventStore(plugins=host, projections=["incomplete"])


class DoubledTipsProjection(TipsProjection):
    """Version 2 of the tips projection, as an upgraded plugin folds it: each tip counts
    twice, and it dumps each total in an object of its own."""

    schema_version = 2

    def fold(self, state: int | None, event: Event, entity_id: str, offset: int) -> int:
        return (state or 0) + 2 * super().fold(None, event, entity_id, offset)

    def dump(self) -> dict[str, Any]:
        return {channel: {"total": str(total)} for channel, total in self.totals.items()}

    def load(self, data: dict[str, Any]) -> None:
        self.totals = {channel: int(entry["total"]) for channel, entry in data.items()}


class DoubledTipsPlugin(TipsPlugin):
    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        register("tips", DoubledTipsProjection)


def test_a_projection_replaced_at_runtime_reconstructs_with_the_new_one() -> None:
    """A kind not folded inline is reconstructed with the projection registered now: after
    its plugin is replaced, neither the old instance nor the checkpoints its folds left
    answer for the new one."""
    host = _host()
    with EventStore(plugins=host, projections=["channel"], checkpoint_every=2) as store:
        store.append_batch(_tips(10))
        assert store.reconstruct("tips", CHANNEL, at=10) == sum(range(1, 11))
        assert store.reconstruct("tips", CHANNEL, at=5) == sum(range(1, 6))
        assert len(store.checkpoints) > 0  # left by the folds of version 1
        host.unregister("tips")
        host.register(TipsPlugin(), name="tips")  # the same projection again: still right
        assert store.reconstruct("tips", CHANNEL, at=5) == sum(range(1, 6))
        host.unregister("tips")
        host.register(DoubledTipsPlugin(), name="doubled")
        assert store.reconstruct("tips", CHANNEL, at=10) == 2 * sum(range(1, 11))
        assert store.reconstruct("tips", CHANNEL, at=5) == 2 * sum(range(1, 6))
        assert store.reconstruct("tips", CHANNEL) == 2 * sum(range(1, 11))
        assert StateReconstructor(store, use_snapshots=False).reconstruct(
            "tips", CHANNEL, at=7
        ) == store.reconstruct("tips", CHANNEL, at=7)


def test_a_snapshot_of_an_earlier_offset_after_a_replacement_holds_what_it_says() -> None:
    """A snapshot of an earlier offset is built from fresh instances of the projections
    registered now, and stamped with their versions: it must start from a snapshot of those
    versions (not of the ones the store folds inline), or it holds states of neither fold
    (restored by every later store of the new version)."""
    host = _host()
    backend = MemoryBackend()
    with EventStore(backend, plugins=host, projections=["tips"]) as store:
        store.append_batch(_tips(10))
        store.snapshot()  # version 1, at 10
        store.append_batch(_tips(5, start=11))
        host.unregister("tips")
        host.register(DoubledTipsPlugin(), name="doubled")
        assert store.snapshot(12).versions == {"tips": 2}
    upgraded = PluginHost(load_entry_points=False)
    upgraded.register(DoubledTipsPlugin(), name="doubled")
    with EventStore(backend, plugins=upgraded, projections=["tips"]) as reopened:
        assert reopened.reconstruct("tips", CHANNEL, at=13) == 2 * sum(range(1, 13))
        assert reopened.state("tips", CHANNEL) == 2 * sum(range(1, 16))


def test_an_inline_projection_whose_plugin_was_replaced_reads_only_its_own_snapshots() -> None:
    """A store folds the projection it opened with; reconstructing one of its kinds reads
    an entity out of a snapshot of that projection's version, not with the one registered
    since (which reads another dump)."""
    host = _host()
    with EventStore(plugins=host, projections=["tips"]) as store:
        store.append_batch(_tips(10))
        store.snapshot()
        store.append_batch(_tips(2, start=11))
        host.unregister("tips")
        host.register(DoubledTipsPlugin(), name="doubled")
        assert store.reconstruct("tips", CHANNEL, at=12) == sum(range(1, 12))
        assert store.state("tips", CHANNEL) == sum(range(1, 13))
