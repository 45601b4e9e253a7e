"""The ingest's JetStream durable consumer: created when missing (from the stream's first
message; a mirror's that vanished under the ingest, from the message that holds the
replica's next offset), and taken again from its acknowledgement floor when messages it
delivered are still unacknowledged, or from the message a mirror needs next when it finds
a gap (ADR 0046).

JetStream redelivers an unacknowledged message only once its ack wait has passed, and
then among newer messages, not before them. Two things leave messages unacknowledged: an
ingest killed with a batch in hand (its successor would wait out the ack wait, and a mirror
would meanwhile be handed the messages after the gap), and a mirror that finds a gap and
hands back what follows it. A mirror appends only in offset order, so messages arriving out
of order were handed back again and again, and a replica ingested a few records a second.
Taking delivery again from the floor (the last message below which every one is
acknowledged) delivers what was pending at once and in stream order; what was already
acknowledged above the floor comes again and is recognised as a duplicate. A mirror that
finds a gap takes delivery again from the message that should hold its next offset, found
from the message after the gap when the stream holds one message per offset; that also
brings back what a replica lost after acknowledging it (a replica restored from a backup
under its durable consumer). Where the guess lands past a message the stream lacks, the
next gap guesses lower, so the mirror gets there in a few tries.

A consumer vanishes under a running ingest when it is deleted, or its stream is (a node's
stream deleted and created again, its relay publishing the log anew): created again from
the first message, it would deliver everything the replica holds once more, each a
duplicate to look up. A mirror's is created again from the message that should hold the
replica's next offset, guessed from the stream's first message as a gap's is (one message
per offset from there): a guess too low brings duplicates, one too high a gap, which takes
delivery again lower. (A consumer missing at start is created from the first message: a
new durable consumer replays the whole stream, as documented.)

A durable consumer belongs to one ingest: the ingest's lease (``ingest:<name>``) keeps a
second one of its name away, so no other puller holds its messages when it is taken again.
"""

from __future__ import annotations

import dataclasses
import logging

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamState
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from chanlog_nats.mapping import OFFSET

__all__ = ["DurableSettings", "open_durable"]

logger = logging.getLogger("chanlog.nats")


@dataclasses.dataclass(frozen=True)
class DurableSettings:
    """What a durable consumer the ingest creates is made of.

    Attributes:
        stream: the stream.
        durable: the consumer's name.
        ack_wait: seconds before the server redelivers an unacknowledged message.
        filter_subject: the subjects it delivers (``None``: all).
        max_ack_pending: messages delivered and not yet acknowledged, at most.
    """

    stream: str
    durable: str
    ack_wait: float
    filter_subject: str | None
    max_ack_pending: int

    def new(self, start: int | None = None) -> ConsumerConfig:
        """A consumer delivering the stream from message ``start`` (``None``: the first)."""
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL if start is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            filter_subject=self.filter_subject,
            max_ack_pending=self.max_ack_pending,
        )


async def open_durable(
    js: JetStreamContext,
    settings: DurableSettings,
    *,
    rewind: bool,
    start: int | None = None,
    needed: int | None = None,
) -> None:
    """Make sure the durable consumer exists (created from stream message ``start``; else,
    given the offset a mirror ``needed`` next, from the message that should hold it; else
    from the first); with ``rewind``, take it again from ``start``, or, without one, from
    its acknowledgement floor when it has unacknowledged messages (the module's docs),
    keeping its configuration.

    Raises:
        nats.errors.Error: the stream does not exist (the ingest waits for it), or NATS
            failed.
    """
    stream, durable = settings.stream, settings.durable
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        try:
            state = (await js.stream_info(stream)).state
        except NotFoundError:
            raise nats.errors.Error(f"no JetStream stream named {stream}") from None
        if start is None and needed is not None:
            start = await _holding(js, stream, state, needed)
        await js.add_consumer(stream, settings.new(start))
        logger.info(
            "nats ingest: created durable consumer %s of %s, delivering from stream message %d",
            durable,
            stream,
            start or state.first_seq,
        )
        return
    if not rewind or (start is None and not info.num_ack_pending):
        return
    if start is None:
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        start = floor + 1
    config = dataclasses.replace(
        info.config,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        opt_start_time=None,
    )
    logger.info(
        "nats ingest: durable consumer %s of %s (%d unacknowledged message(s)): taking "
        "delivery again from stream message %d",
        durable,
        stream,
        info.num_ack_pending,
        start,
    )
    # A failure between the two leaves no consumer: the next try creates it (from the
    # first message after a crash), and the replica recognises what it holds.
    await js.delete_consumer(stream, durable)
    await js.add_consumer(stream, config)


async def _holding(
    js: JetStreamContext, stream: str, state: StreamState, offset: int
) -> int | None:
    """The stream message that holds record ``offset`` if the stream holds one message per
    offset from its first (a guess, the module's docs); ``None`` (from the first message)
    when the stream is empty or its first message names no offset."""
    if not state.messages:
        return None
    try:
        first = await js.get_msg(stream, state.first_seq)
    except NotFoundError:  # removed meanwhile (a limit, a purge)
        return None
    first_offset = (first.headers or {}).get(OFFSET, "")
    if not isinstance(first_offset, str) or not first_offset.isdecimal():
        return None
    return state.first_seq + max(offset - int(first_offset), 0)
