"""The ``nats`` broker: live subscriptions across processes and machines over core NATS
(ADR 0028)::

    [bus]
    broker = "nats"
    url = "nats://127.0.0.1:4222"
    live_prefix = "live"        # the first token of live subjects

Every committed record is published once, in offset order, on core NATS under
``<live_prefix>.<its subject>`` with the relay's body and headers. A subscription subscribes
``<live_prefix>.<pattern>`` and hands each record, decoded and its event id recomputed, to
the store's :class:`~chanlog.subscriptions.Subscription` (which fills a gap from the log
and skips what it already delivered).

Core NATS, not JetStream: live delivery is the fast path (no storage round trip, no
acknowledgement); the durable path is the relay's stream. The live subjects have a prefix
of their own so that a JetStream stream capturing ``<prefix>.>`` (the relay's) never stores
a live message: those carry no order guard, and a second, unguarded writer would break the
stream's gapless order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from chanlog.bus.brokers import BusContext, LiveReceiver
from chanlog.bus.subjects import check_prefix, subject_of
from chanlog.errors import ChanlogError, ConfigError, InvalidArgument, PluginError
from chanlog.records import RecordedEvent
from chanlog_nats.client import NatsThread
from chanlog_nats.mapping import OFFSET, headers_of, over_max_payload, read_envelope
from chanlog_nats.options import DEFAULT_URL, check_no_more, check_seconds, check_url

__all__ = ["BROKER_OPTIONS", "NatsBroker"]

logger = logging.getLogger("chanlog.nats")

BROKER_OPTIONS = ("url", "live_prefix", "connect_timeout")
"""Every option of the ``nats`` broker (the keys of ``[bus]`` besides broker and prefix)."""

_WHAT = "nats broker"
_STOP = object()

Message = tuple[str, bytes, dict[str, str]]


class NatsBroker:
    """Carries committed records over core NATS (see the module docs).

    Args:
        context: the store it serves.
        **options: see below.

    Keyword options (the keys of ``[bus]`` besides ``broker`` and ``prefix``):

        url: the NATS server (default ``nats://127.0.0.1:4222``).
        live_prefix: the token(s) before a record's subject on the wire (default ``live``).
        connect_timeout: seconds the store's opening waits for the server (it keeps
            trying in the background after that; records committed meanwhile are not
            published live).

    Raises:
        ConfigError: a bad option.
    """

    name = "nats"
    publishes = True
    accepted_options = BROKER_OPTIONS
    """Checked when a configuration is read, by every command (not only when built)."""

    def __init__(self, *, context: BusContext, **options: Any) -> None:
        self.url = check_url(_WHAT, options.pop("url", DEFAULT_URL))
        live = options.pop("live_prefix", "live")
        try:
            self.live_prefix = check_prefix(live)
        except InvalidArgument as exc:
            raise ConfigError(f"{_WHAT}: live_prefix: {exc}", key="live_prefix") from None
        timeout = check_seconds(_WHAT, "connect_timeout", options.pop("connect_timeout", 2))
        check_no_more(_WHAT, options, BROKER_OPTIONS)
        if context.decode is None:
            raise PluginError(f"{_WHAT}: the bus context has no decode function")
        self._context = context
        self._decode: Callable[[str, bytes, int, str, str], RecordedEvent] = context.decode
        self._strip = len(self.live_prefix) + 1
        self._thread = NatsThread(self.url, f"broker-{context.prefix}", connect_timeout=timeout)
        self._outbox: asyncio.Queue[list[Message]] | None = None
        self._deliveries: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._deliverer = threading.Thread(
            target=self._deliver, name="chanlog-nats-delivery", daemon=True
        )
        self._deliverer.start()
        self.published = 0
        self.dropped = 0
        """Records not published because the connection's buffer was full or missing."""
        self.refused = 0
        """Messages received whose body does not match their headers (not delivered)."""
        self._closed = False
        self._in_hand = False  # the delivery thread is in a receiver (a callback may block)
        try:
            self._thread.call(self._start(), timeout * 2)
        except Exception as exc:  # the store opens anyway; publishing starts once connected
            logger.warning("%s: NATS at %s not reachable yet (%s)", _WHAT, self.url, exc)
            self._thread.submit(self._start_later())

    async def _start(self) -> None:
        if self._outbox is None:
            self._outbox = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._sender(self._outbox))
        await self._thread.connect()

    async def _start_later(self) -> None:
        while not self._closed:
            try:
                await self._start()
                logger.warning("%s: connected to NATS at %s", _WHAT, self.url)
                return
            except Exception:  # not reachable yet
                await asyncio.sleep(1.0)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, records: Sequence[RecordedEvent]) -> None:
        """Queue ``records`` for publishing, in order; never raises (see
        :meth:`chanlog.bus.Broker.publish`)."""
        outbox = self._outbox
        if outbox is None or self._closed:
            self.dropped += len(records)
            return
        prefix = self._context.prefix
        live = self.live_prefix
        batch = [
            (
                f"{live}.{subject_of(record, prefix)}",
                record.event.canonical_json(),
                headers_of(record),
            )
            for record in records
        ]
        try:
            self._thread.loop.call_soon_threadsafe(outbox.put_nowait, batch)
        except RuntimeError:  # the loop is closed: the store is closing
            self.dropped += len(records)

    async def _sender(self, outbox: asyncio.Queue[list[Message]]) -> None:
        """Publish queued batches one after the other (one task: offset order holds)."""
        while True:
            batch = await outbox.get()
            client = self._thread.client
            for subject, body, headers in batch:
                try:
                    if client is None:
                        raise ChanlogError("not connected")
                    if over_max_payload(body, headers, client.max_payload):
                        self._refuse_oversized(body, headers, client.max_payload)
                        continue
                    await client.publish(subject, body, headers=headers)
                    self.published += 1
                except Exception as exc:  # live delivery is best effort; the log is not
                    self.dropped += 1
                    if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                        logger.warning(
                            "%s: %d record(s) not published live (%r)", _WHAT, self.dropped, exc
                        )

    def _refuse_oversized(self, body: bytes, headers: dict[str, str], limit: int) -> None:
        """Count as not published a record the server would refuse for its size (and close
        the connection over, losing what else is in flight), saying which (ADR 0075)."""
        self.dropped += 1
        logger.warning(
            "%s: the record at offset %s is not published live: its payload of %d bytes, "
            "with its headers, is more than the NATS server's max_payload of %d bytes "
            "(subscribers read it from the log when the next record reaches them)",
            _WHAT,
            headers.get(OFFSET, "?"),
            len(body),
            limit,
        )

    async def _drain(self) -> None:
        outbox = self._outbox
        while outbox is not None and not outbox.empty():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0)  # the sender publishes the batch it took
        client = self._thread.client
        if client is not None and client.is_connected:
            await client.flush(timeout=2)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(self, receiver: LiveReceiver) -> Callable[[], None]:
        """Subscribe ``receiver``'s patterns on NATS; return the function that stops."""
        subjects = receiver.subjects
        if subjects is None:
            nats_subject, check = f"{self.live_prefix}.{self._context.prefix}.>", None
        elif len(subjects.patterns) == 1:
            nats_subject, check = f"{self.live_prefix}.{subjects.patterns[0].text}", None
        else:
            # One NATS subscription, so the records keep one order; the receiver's own
            # patterns pick what it wants.
            nats_subject, check = f"{self.live_prefix}.>", subjects.matches_subject
        active = threading.Event()
        active.set()
        deliveries = self._deliveries
        strip = self._strip

        async def on_message(msg: Msg) -> None:
            if check is None or check(msg.subject[strip:]):
                deliveries.put((receiver, active, msg))

        async def subscribe() -> NatsSubscription:
            client = await self._thread.connect()
            subscription = await client.subscribe(nats_subject, cb=on_message)
            await client.flush()  # the server knows of it before the first record commits
            return subscription

        try:
            subscription = self._thread.call(subscribe(), 10)
        except Exception as exc:
            raise ChanlogError(f"{_WHAT}: cannot subscribe {nats_subject!r}: {exc}") from exc

        def stop() -> None:
            active.clear()
            if not self._thread.loop.is_closed():
                self._thread.submit(_unsubscribe(subscription))

        return stop

    def _deliver(self) -> None:
        """Hand received records to their receivers, off the event loop (a receiver may
        read the log to fill a gap)."""
        while True:
            item = self._deliveries.get()
            if item is _STOP:
                return
            receiver, active, msg = item
            if not active.is_set():
                continue
            try:
                envelope = read_envelope(msg.headers)
                record = self._decode(
                    envelope.event_type,
                    msg.data,
                    envelope.offset,
                    envelope.event_id,
                    envelope.chain_hash,
                )
            except ChanlogError as exc:
                self.refused += 1
                logger.warning("%s: dropped a message on %s: %s", _WHAT, msg.subject, exc)
                continue
            self._in_hand = True
            try:
                receiver.receive(record)
            except Exception:  # a receiver's failure is its own; others go on
                logger.exception("%s: a receiver failed on offset %d", _WHAT, record.offset)
            finally:
                self._in_hand = False

    def close(self) -> None:
        """Stop delivering and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:  # what was committed before the close still goes out
            self._thread.call(self._drain(), 5)
        except Exception:
            logger.warning("%s: closing with records not yet published live", _WHAT)
        self._thread.close()
        self._deliveries.put(_STOP)
        # Not while a callback is in hand: it may wait for whoever closes (ADR 0065). The
        # store closed its subscriptions first, so none gets a record after it; the thread
        # ends on _STOP once the callback returns.
        if self._deliverer is not threading.current_thread() and not self._in_hand:
            self._deliverer.join(5)

    def __repr__(self) -> str:
        return f"NatsBroker(url={self.url!r}, live_prefix={self.live_prefix!r})"


async def _unsubscribe(subscription: NatsSubscription) -> None:
    try:
        await subscription.unsubscribe()
    except Exception:  # already closed with the connection
        logger.debug("unsubscribing failed", exc_info=True)
