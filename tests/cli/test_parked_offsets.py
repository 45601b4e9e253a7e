"""``chanlog consumers replay|drop NAME --offset N`` for a record that the consumer did not
park is refused, naming the offset, the consumer and what it parked (exit 3, as ``show``
treats an entity that does not exist), and changes nothing: it once said "0 parked
record(s)" and exited 0, so a mistyped offset looked like success."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.conftest import Recorder
from chanlog.backends.sqlite import SqliteBackend
from chanlog.store import EventStore
from chanlog.testing import sample_events
from cli.conftest import Run


@pytest.fixture
def parked_db(db: Path) -> Path:
    """A log of 8 records whose consumer ``c`` parked offsets 3 and 5."""
    with EventStore(SqliteBackend(db), projections=[]) as store:
        store.append_batch(sample_events(8))
        with store.bus.consumer("c", Recorder(fail_on={3, 5}), backoff=[0.0], max_deliver=1) as r:
            r.drain()
        assert [p.offset for p in store.bus.consumers.parked("c")] == [3, 5]
    return db


def _parked(db: Path) -> list[tuple[int, bool]]:
    with EventStore(SqliteBackend(db), projections=[]) as store:
        return [(p.offset, p.replay) for p in store.bus.consumers.parked("c")]


@pytest.mark.parametrize("command", ["replay", "drop"])
def test_an_offset_the_consumer_did_not_park_is_refused_and_nothing_changes(
    run: Run, parked_db: Path, command: str
) -> None:
    result = run("consumers", command, "c", "--offset", "3", "--offset", "4")
    assert result.exit_code == 3, result.output
    assert result.stderr.strip() == (
        "chanlog: not found: offset 4 is not parked for consumer 'c' "
        "(parked: 3, 5; see chanlog consumers parked c)"
    )
    assert result.stdout == ""
    assert _parked(parked_db) == [(3, False), (5, False)]


def test_a_consumer_with_nothing_parked_says_so(run: Run, parked_db: Path) -> None:
    assert run("consumers", "drop", "c").exit_code == 0
    for command in ("replay", "drop"):
        result = run("consumers", command, "c")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "c: nothing is parked"
    result = run("consumers", "replay", "c", "--offset", "3")
    assert result.exit_code == 3, result.output
    assert "offset 3 is not parked for consumer 'c' (parked: none;" in result.stderr


@pytest.mark.parametrize(
    ("command", "said", "after"),
    [
        ("replay", "c: 1 parked record(s) to replay", [(3, False), (5, True)]),
        ("drop", "c: dropped 1 parked record(s)", [(3, False)]),
    ],
)
def test_a_parked_offset_is_still_replayed_or_dropped(
    run: Run, parked_db: Path, command: str, said: str, after: list[tuple[int, bool]]
) -> None:
    result = run("consumers", command, "c", "--offset", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == said
    assert _parked(parked_db) == after
