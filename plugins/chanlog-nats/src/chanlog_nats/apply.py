"""What the ``nats`` ingest does with a batch of messages: decide, per message, to append
it, take it as a duplicate, park it or wait for what must come before it; append the new
events in one transaction; keep the parked ones (ADR 0028).

- The event id is recomputed from the body; one that does not match the ``Nats-Msg-Id`` is
  parked, never appended.
- An event already in the log (by event id) is a duplicate: nothing is written.
- An event the store's rules refuse (``InvalidTransition``...) is parked.
- As a *mirror* (the default), the replica must end with the node's offsets and chain
  head: a message must carry the replica's next offset and the chain hash that follows
  the replica's head. One whose offset is further on waits (it is redelivered later; what
  comes before it is still on its way); one whose offset the replica already filled with
  another record, or whose chain hash does not follow, is parked.

Parked messages are kept by the store's backend as parked records of the consumer
``ingest:<name>`` (:func:`chanlog.bus.ingest.ingest_consumer_name`), with the stream
sequence as their offset; the consumer's position is the replica's length.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

import attrs

from chanlog import codec
from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.source import BusStore
from chanlog.errors import ChanlogError, DecodeError, InvalidEvent, StorageError
from chanlog.events.base import Event
from chanlog.hashing import chain_next
from chanlog.records import ParkedRecord, PositionMove
from chanlog.telemetry import ContinuesTraces, telemetry_of
from chanlog_nats.mapping import EVENT_TYPE, MSG_ID, Envelope, read_envelope

__all__ = ["ACK", "PARK", "WAIT", "Applier", "Incoming", "Outcome"]

logger = logging.getLogger("chanlog.nats")

ACK = "ack"
"""Appended, or already in the log: acknowledge."""
PARK = "park"
"""Kept as a parked record, not appended: terminate (no redelivery)."""
WAIT = "wait"
"""Not yet: something before it is missing; redeliver later."""


@attrs.frozen
class Incoming:
    """One message as the ingest pulled it.

    Attributes:
        headers: its headers.
        body: its body.
        stream_seq: its sequence in the stream.
        deliveries: how many times it was delivered (this one included).
    """

    headers: dict[str, str] | None
    body: bytes
    stream_seq: int
    deliveries: int = 1


@attrs.define
class Outcome:
    """What one batch did.

    Attributes:
        verdicts: per message, :data:`ACK`, :data:`PARK` or :data:`WAIT`.
        appended: events appended.
        duplicates: messages whose event was already in the log.
        parked: the parked records kept.
        waiting: why a message waits (the latest), if one does.
        resume_at: for a mirror that found a gap, the stream message that holds the
            replica's next offset if the stream holds one message per offset from there
            (the lowest such guess of the batch); ``None`` without a gap.
    """

    verdicts: list[str]
    appended: int = 0
    duplicates: int = 0
    parked: list[ParkedRecord] = attrs.Factory(list)
    waiting: str | None = None
    resume_at: int | None = None


class _Refused(Exception):
    """A message that must be parked, and why."""


class Applier:
    """Applies batches of messages to one store for one ingest.

    Args:
        store: the replica.
        consumer: the consumer name its parked messages are kept under.
        holder: the ingest's lease holder identity.
        mirror: check offsets and chain hashes (see the module docs).
        lease_ttl: seconds each move renews the lease for.
        source: the stream the messages come from (named in the telemetry that continues
            their senders' traces, when the store has one: ADR 0062).
    """

    def __init__(
        self,
        store: BusStore,
        keeper: KeepsConsumers,
        consumer: str,
        holder: str,
        *,
        mirror: bool,
        lease_ttl: float,
        source: str = "",
    ) -> None:
        self.store = store
        self.keeper = keeper
        self.consumer = consumer
        self.holder = holder
        self.mirror = mirror
        self.lease_ttl = lease_ttl
        self.source = source
        self._types = store.plugins.event_types
        telemetry = telemetry_of(store)
        self._tracing = telemetry if isinstance(telemetry, ContinuesTraces) else None

    def _received(
        self, carriers: Sequence[Mapping[str, str] | None]
    ) -> AbstractContextManager[object]:
        """Around an append of received messages: their senders' traces continued, when
        the store's telemetry does that."""
        if self._tracing is None:
            return contextlib.nullcontext()
        return self._tracing.received("nats", self.source, carriers)

    def apply(self, messages: Sequence[Incoming]) -> Outcome:
        """Decide, append and park; return the verdicts (acknowledge only after this
        returned: the appends and the parked records are committed by then)."""
        outcome = Outcome([WAIT] * len(messages))
        backend = self.store.backend
        head = backend.head()
        next_offset, chain = head.length, head.chain_hash
        events: list[Event] = []
        indexes: list[int] = []
        seen: set[str] = set()
        for index, message in enumerate(messages):
            try:
                envelope, event = self._check(message)
                raw_id = bytes.fromhex(event.event_id[2:])
                # A mirror looks an event up only below its next offset: past it, the chain
                # check proves the replica is the node's prefix, which holds no event twice.
                known = event.event_id in seen or (
                    (not self.mirror or envelope.offset < next_offset)
                    and backend.find(raw_id) is not None
                )
                if known:
                    outcome.verdicts[index] = ACK
                    outcome.duplicates += 1
                    continue
                if self.mirror:
                    if envelope.offset > next_offset:
                        outcome.waiting = (
                            f"stream message {message.stream_seq} is offset {envelope.offset}, "
                            f"the replica's next is {next_offset}: waiting for what comes before"
                        )
                        guess = max(message.stream_seq - (envelope.offset - next_offset), 1)
                        outcome.resume_at = min(outcome.resume_at or guess, guess)
                        continue
                    chain = self._follows(envelope, next_offset, chain, raw_id)
                    next_offset += 1
            except _Refused as refused:
                outcome.verdicts[index] = PARK
                outcome.parked.append(self._parked(message, str(refused)))
                continue
            seen.add(event.event_id)
            events.append(event)
            indexes.append(index)
        self._append(messages, events, indexes, outcome)
        self._commit(outcome)
        return outcome

    def _check(self, message: Incoming) -> tuple[Envelope, Event]:
        """The message's claims and its event, whose id must be the claimed one."""
        try:
            envelope = read_envelope(message.headers)
            event = codec.decode_event(
                envelope.event_type, message.body, self._types, offset=envelope.offset
            )
        except (DecodeError, InvalidEvent) as exc:
            raise _Refused(f"undecodable message: {exc}") from None
        if event.event_id != envelope.event_id:
            raise _Refused(
                f"event id mismatch: the body's event id is {event.event_id}, its "
                f"{MSG_ID} says {envelope.event_id}"
            )
        return envelope, event

    def _follows(self, envelope: Envelope, next_offset: int, chain: bytes, raw_id: bytes) -> bytes:
        """The chain hash after appending ``raw_id`` at ``next_offset`` (a mirror's check)."""
        if envelope.offset < next_offset:
            raise _Refused(
                f"offset {envelope.offset} is already another record in this replica (a "
                "replica that also appends on its own, or a stream of another log)"
            )
        following = chain_next(chain, raw_id)
        if "0x" + following.hex() != envelope.chain_hash:
            raise _Refused(
                f"chain hash mismatch at offset {envelope.offset}: the message says "
                f"{envelope.chain_hash}, the replica's chain gives 0x{following.hex()}"
            )
        return following

    def _append(
        self,
        messages: Sequence[Incoming],
        events: list[Event],
        indexes: list[int],
        outcome: Outcome,
    ) -> None:
        """Append ``events`` in one transaction; when the store refuses the batch, one by
        one, parking what it refuses (and, as a mirror, waiting on what follows it)."""
        if not events:
            return
        try:
            with self._received([messages[index].headers for index in indexes]):
                self.store.append_batch(events)
        except StorageError:
            raise  # the store failed, it did not refuse: the ingest tries the batch again
        except ChanlogError:
            self._append_one_by_one(messages, events, indexes, outcome)
            return
        for index in indexes:
            outcome.verdicts[index] = ACK
        outcome.appended += len(events)

    def _append_one_by_one(
        self,
        messages: Sequence[Incoming],
        events: list[Event],
        indexes: list[int],
        outcome: Outcome,
    ) -> None:
        for event, index in zip(events, indexes, strict=True):
            try:
                with self._received([messages[index].headers]):
                    self.store.append_batch([event])
            except StorageError:
                raise  # what went in before is found again (by its id) when retried
            except ChanlogError as exc:
                outcome.verdicts[index] = PARK
                outcome.parked.append(self._parked(messages[index], f"refused by the store: {exc}"))
                if self.mirror:  # what follows was checked against a chain that now differs
                    return
                continue
            outcome.verdicts[index] = ACK
            outcome.appended += 1

    def _parked(self, message: Incoming, reason: str) -> ParkedRecord:
        headers = message.headers or {}
        claimed = headers.get(MSG_ID, "")
        logger.error(
            "ingest %s: parked stream message %d: %s", self.consumer, message.stream_seq, reason
        )
        return ParkedRecord(
            self.consumer,
            message.stream_seq,
            claimed.partition(":")[0],
            headers.get(EVENT_TYPE, ""),
            message.deliveries,
            reason,
            time.time(),
        )

    def _commit(self, outcome: Outcome) -> None:
        """Record the batch in the consumer: the replica's length as its position, the
        appended count, the parked records (before anything is acknowledged)."""
        if not outcome.appended and not outcome.parked:
            return
        self.keeper.move_consumer(
            PositionMove(
                self.consumer,
                self.holder,
                len(self.store),
                handled=outcome.appended,
                lease_ttl=self.lease_ttl,
                parked=tuple(outcome.parked),
                error=outcome.parked[-1].error if outcome.parked else None,
            )
        )
