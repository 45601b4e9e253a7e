"""A store on a shared log answers "now" for the log its length reports: what another
process appended is folded before ``reconstruct`` without ``at`` and ``state`` answer
(ADR 0060). Found by the model-based test (tests/core/store_model.py)."""

from __future__ import annotations

from pathlib import Path

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.events import ChannelCreated
from chanlog.workload import Workload


def test_now_includes_what_another_process_appended(tmp_path: Path) -> None:
    events = Workload(seed=1, channels=1, turns=2, interleave=1).events()
    created = next(i for i, e in enumerate(events) if isinstance(e, ChannelCreated))
    channel = events[created].channel_id  # type: ignore[attr-defined]
    objective = events[0].objective_id  # type: ignore[attr-defined]
    with (
        EventStore(SqliteBackend(tmp_path / "log.db")) as node,
        EventStore(SqliteBackend(tmp_path / "log.db")) as other,
    ):
        node.append_batch(events[:created])
        assert other.append_batch(events[created:]) == list(range(created, len(events)))
        assert len(node) == len(events)
        at_end = node.reconstruct("channel", channel, at=len(events))
        # Before: NotFound (the channel was created by the other store), and the
        # objective as it was before the other store's appends.
        assert node.reconstruct("channel", channel) == at_end
        assert node.state("channel", channel) == at_end
        assert node.state("objective", objective) == other.state("objective", objective)
        assert node.reconstruct("objective", objective) == node.reconstruct(
            "objective", objective, at=len(events)
        )
        assert node.projection("channel").get(channel) == at_end  # folded, not only read
