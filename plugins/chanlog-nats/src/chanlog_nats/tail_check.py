"""Whether a relay's stream still holds what the log says was relayed to it (ADR 0049).

The relay goes on from where its stream ends. That is only right when the stream's last
record is this log's record at that offset, and when the stream holds at least what the
relay stored in it. Otherwise going on would skip records for good (the log lost records and
others took their offsets, ADR 0047: the records that took them would never be published) or
begin the stream mid-log (the stream was deleted, purged, or kept in memory by a server that
restarted: a mirror fed from it would wait for ever). A :class:`TailCheck` refuses both with
an :class:`~chanlog.errors.IntegrityError` naming the stream, the offsets and the remedy.
"""

from __future__ import annotations

from collections.abc import Callable

from chanlog.errors import IntegrityError
from chanlog_nats.mapping import Envelope
from chanlog_nats.stream import StreamTail

__all__ = ["InLog", "TailCheck"]

InLog = Callable[[Envelope], str | None]
"""Why a message's claims are not this log's record at the offset it claims (``None``:
they are)."""

FirstRelayed = Callable[[int, int], int | None]
"""The first offset in ``[start, end)`` whose record the consumer relays (its subjects
match it), or ``None``."""


class TailCheck:
    """Refuses a stream that does not continue what this log relayed to it.

    Args:
        consumer: the relay's consumer (errors name it and the reset to run).
        stream: the stream's name.
        in_log: checks the stream's last record against the log.
        relayed: the consumer's committed position when it had relayed records before
            this run (``None``: it had not, so a stream may begin where it starts, as a
            consumer that starts at ``latest`` asks).
        first_relayed: finds a record the consumer relays between the stream's end and
            ``relayed`` (``None``: not looked for).
    """

    def __init__(
        self,
        consumer: str,
        stream: str,
        in_log: InLog,
        relayed: int | None,
        first_relayed: FirstRelayed | None = None,
    ) -> None:
        self.consumer = consumer
        self.stream = stream
        self._in_log = in_log
        self.relayed = relayed
        self._first_relayed = first_relayed

    def missing(self, stored: int | None) -> None:
        """Allow creating the stream, which does not exist, unless records were relayed to
        it: by this run (up to offset ``stored``) or before it (the consumer's position).

        Raises:
            IntegrityError: records were relayed to the stream, which is gone.
        """
        held = self._held(stored)
        if held is not None:
            raise IntegrityError(
                f"nats-relay {self.consumer}: the JetStream stream {self.stream} is gone "
                f"(deleted, or kept in memory by a server that restarted), but {held}; a new "
                f"stream would begin mid-log, so nothing is published. {self._remedy()}",
                offset=0,
            )

    def check(self, tail: StreamTail, stored: int | None) -> None:
        """Accept ``tail`` as where the relay goes on, given that this run stored up to
        offset ``stored`` in the stream (``None``: nothing yet).

        Raises:
            IntegrityError: the stream's last record is not this log's record at its
                offset, or the stream holds less than was relayed to it.
        """
        envelope = tail.envelope
        if envelope is not None:
            problem = self._in_log(envelope)
            if problem is not None:
                raise IntegrityError(
                    f"nats-relay {self.consumer}: the JetStream stream {self.stream} ends with "
                    f"offset {envelope.offset} (stream sequence {tail.seq}), which is not this "
                    f"log's record ({problem}): the log lost records the stream holds and "
                    f"others took their offsets (ADR 0047), or something else wrote to the "
                    f"stream; going on would never publish this log's records from there, so "
                    f"nothing is published. Relay this log to a fresh stream: delete "
                    f"{self.stream} (what was fed from it holds the lost records), then "
                    f"chanlog consumers reset {self.consumer} --to earliest",
                    offset=envelope.offset,
                )
        ends = tail.offset
        if ends is not None and stored is None:
            self._lost_tail(ends)
        held = self._held(stored)
        # A stream emptied by its limits or a purge keeps its sequence: it goes on. One
        # whose sequence starts again was made anew.
        if tail.last_seq == 0 and held is not None:
            raise IntegrityError(
                f"nats-relay {self.consumer}: the JetStream stream {self.stream} is new (it "
                f"never held a message), but {held}; going on would begin it mid-log, so "
                f"nothing is published. {self._remedy()}",
                offset=0,
            )
        if ends is not None and stored is not None and ends < stored:
            raise IntegrityError(
                f"nats-relay {self.consumer}: the JetStream stream {self.stream} ends at "
                f"offset {ends}, but it had stored offsets up to {stored} (it was purged, or "
                f"its server lost messages it had acknowledged); going on would leave offsets "
                f"{ends + 1}..{stored} out of it, so nothing is published. "
                f"{self._remedy()}",
                offset=ends + 1,
            )

    def _lost_tail(self, ends: int) -> None:
        """Refuse a stream that ends below records the consumer's position says were
        relayed (the position moves only past what the stream acknowledged): the server
        lost its last writes, or the stream was restored from an older copy. Going on from
        the position would leave them out for good; the stream's end, which is this log's
        record, is where the relay can go on from."""
        relayed, first_relayed = self.relayed, self._first_relayed
        if relayed is None or first_relayed is None or ends + 1 >= relayed:
            return
        missing = first_relayed(ends + 1, relayed)
        if missing is None:
            return  # nothing between is the consumer's: the stream holds all it relayed
        raise IntegrityError(
            f"nats-relay {self.consumer}: the JetStream stream {self.stream} ends with offset "
            f"{ends}, but the consumer's position ({relayed}) says records after it were "
            f"relayed, offset {missing} among them: the stream lost messages it had "
            f"acknowledged (a server that lost its last writes, a stream restored from an "
            f"older copy); going on would leave them out of it, so nothing is published. "
            f"Publish them again: chanlog consumers reset {self.consumer} --to {ends + 1}",
            offset=missing,
        )

    def _held(self, stored: int | None) -> str | None:
        """What says the stream held records, in words (``None``: nothing does)."""
        if stored is not None:
            return f"this relay stored offsets up to {stored} in it"
        if self.relayed is not None:
            return f"the consumer relayed records to it (its position is {self.relayed})"
        return None

    def _remedy(self) -> str:
        return (
            f"To go on, restore the stream from a backup, or republish this log from offset 0 "
            f"into a fresh stream: stop the relay, delete {self.stream} if it still exists, "
            f"run chanlog consumers reset {self.consumer} --to earliest and start it again"
        )
