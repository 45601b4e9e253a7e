""":class:`~chanlog_nats.tail_check.TailCheck` on its own: which stream ends a relay may go
on from (ADR 0049)."""

from __future__ import annotations

import pytest
from chanlog_nats.mapping import Envelope
from chanlog_nats.stream import StreamTail
from chanlog_nats.tail_check import TailCheck

from chanlog.errors import IntegrityError

EVENT_ID = "0x" + "ab" * 32
CHAIN_HASH = "0x" + "cd" * 32


def _tail(offset: int, seq: int) -> StreamTail:
    envelope = Envelope(f"{EVENT_ID}:{offset}", EVENT_ID, offset, CHAIN_HASH, "message-sent")
    return StreamTail(seq, offset, envelope.msg_id, envelope, seq)


def _check(relayed: int | None = None, *, holds: bool = True) -> TailCheck:
    return TailCheck(
        "to-nats",
        "NODE_A",
        lambda envelope: None if holds else f"this log has no offset {envelope.offset}",
        relayed,
    )


def test_a_stream_that_continues_the_log_is_gone_on_from() -> None:
    _check(relayed=10).check(_tail(9, 9), stored=None)
    _check(relayed=10).check(_tail(12, 13), stored=12)
    _check().check(StreamTail(0), stored=None)  # nothing relayed: a new stream
    _check().missing(stored=None)


def test_a_last_record_that_is_not_this_logs_is_refused() -> None:
    with pytest.raises(
        IntegrityError, match=r"ends with offset 29 \(stream sequence 30\)"
    ) as error:
        _check(relayed=20, holds=False).check(_tail(29, 30), stored=None)
    assert error.value.offset == 29
    assert "chanlog consumers reset to-nats --to earliest" in str(error.value)


@pytest.mark.parametrize(
    ("relayed", "stored", "said"),
    [
        (10, None, "the consumer relayed records to it (its position is 10)"),
        (None, 9, "this relay stored offsets up to 9 in it"),
    ],
)
def test_a_stream_gone_or_empty_after_records_were_relayed_is_refused(
    relayed: int | None, stored: int | None, said: str
) -> None:
    with pytest.raises(IntegrityError, match="is gone") as gone:
        _check(relayed).missing(stored)
    with pytest.raises(IntegrityError, match="is new") as empty:
        _check(relayed).check(StreamTail(0), stored)
    for error in (gone, empty):
        assert said in str(error.value)
        assert "chanlog consumers reset to-nats --to earliest" in str(error.value)


def test_a_stream_emptied_by_its_limits_or_a_purge_is_gone_on_from() -> None:
    _check(relayed=10).check(StreamTail(10), stored=9)  # its sequence goes on


def test_a_stream_that_ends_below_what_was_stored_in_it_is_refused() -> None:
    with pytest.raises(IntegrityError, match=r"ends at offset 4, but it had stored .* up to 9"):
        _check(relayed=3).check(_tail(4, 5), stored=9)


def test_a_stream_that_lost_its_last_messages_is_refused_at_start() -> None:
    asked: list[tuple[int, int]] = []

    def first_relayed(start: int, end: int) -> int | None:
        asked.append((start, end))
        return start + 1  # the record at the stream's end + 1 is not the consumer's

    check = TailCheck("to-nats", "NODE_A", lambda envelope: None, 20, first_relayed)
    with pytest.raises(IntegrityError, match=r"ends with offset 14, .*position \(20\)") as error:
        check.check(_tail(14, 15), stored=None)
    assert asked == [(15, 20)]
    assert error.value.offset == 16
    assert "chanlog consumers reset to-nats --to 15" in str(error.value)
    check.check(_tail(19, 20), stored=None)  # the stream holds all it relayed
    check.check(_tail(14, 15), stored=14)  # while running: what it stored is the judge


def test_a_stream_ending_below_the_position_past_records_the_consumer_skips_goes_on() -> None:
    # A relay whose subjects skip the records after the stream's end: nothing was lost.
    TailCheck("to-nats", "NODE_A", lambda envelope: None, 20, lambda start, end: None).check(
        _tail(14, 15), stored=None
    )
