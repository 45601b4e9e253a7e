"""The ``nats`` ingest source: pulls a JetStream stream through a durable consumer into a
store, idempotently, acknowledging after the commit (ADR 0028)::

    [ingest.from-node-a]
    source = "nats"
    stream = "NODE_A"
    durable = "replica-1"      # the JetStream durable consumer (created if missing)
    url = "nats://127.0.0.1:4222"
    mirror = true              # same offsets and chain head as the node (the default)

or ``chanlog ingest nats --stream NODE_A --durable replica-1``. What each message becomes
is :mod:`chanlog_nats.apply`'s decision; this module talks to NATS and holds the lease of
the consumer ``ingest:<name>`` (one ingest of a name per store at a time).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.backoff import storage_retry_pause
from chanlog.bus.ingest import ingest_consumer_name
from chanlog.bus.lease import Lease, new_holder
from chanlog.bus.source import BusStore
from chanlog.errors import ConfigError, StorageError
from chanlog_nats.apply import ACK, PARK, WAIT, Applier, Incoming, Outcome
from chanlog_nats.client import NatsThread, describe
from chanlog_nats.durable import DurableSettings, open_durable
from chanlog_nats.options import (
    DEFAULT_URL,
    check_flag,
    check_int,
    check_name,
    check_no_more,
    check_seconds,
    check_url,
)
from chanlog_nats.pull import Puller

__all__ = ["INGEST_OPTIONS", "NatsIngest"]

logger = logging.getLogger("chanlog.nats")

INGEST_OPTIONS = (
    "stream",
    "durable",
    "url",
    "mirror",
    "batch",
    "filter_subject",
    "ack_wait",
    "fetch_timeout",
    "connect_timeout",
    "lease_ttl",
)
"""Every option of the ``nats`` ingest source."""

_WHAT = "nats ingest"
_RETRY = 1.0  # seconds between attempts while NATS cannot be reached


class NatsIngest:
    """Feeds a store from a JetStream stream (see the module docs).

    Args:
        name: the ingest's name (its parked messages: consumer ``ingest:<name>``).
        **options: see below.

    Keyword options (the keys of an ``[ingest.NAME]`` table):

        stream: the stream to pull from.
        durable: the JetStream durable consumer (created, pulling from the first
            message, when missing).
        url: the NATS server (default ``nats://127.0.0.1:4222``).
        mirror: keep the node's offsets and chain head (default true; false appends every
            valid event wherever it lands, e.g. from a relay filtered by subject).
        batch: messages pulled at a time (default 256).
        filter_subject: a new durable consumer's subject filter (default: all).
        ack_wait: seconds before the server redelivers an unacknowledged message (10).
        fetch_timeout: seconds one pull waits for messages (default 1).
        connect_timeout: seconds one connection attempt may take (default 2).
        lease_ttl: seconds the ingest's lease lasts without renewal (default 15).

    Raises:
        ConfigError: a bad or missing option.
    """

    def __init__(self, *, name: str, **options: Any) -> None:
        self.name = name
        for required in ("stream", "durable"):
            if required not in options:
                raise ConfigError(f"{_WHAT}: {required} is required", key=required)
        self.stream = check_name(_WHAT, "stream", options.pop("stream"))
        self.durable = check_name(_WHAT, "durable", options.pop("durable"))
        self.url = check_url(_WHAT, options.pop("url", DEFAULT_URL))
        self.mirror = check_flag(_WHAT, "mirror", options.pop("mirror", True))
        self.batch = check_int(_WHAT, "batch", options.pop("batch", 256))
        subject = options.pop("filter_subject", None)
        if subject is not None and (not isinstance(subject, str) or not subject.strip()):
            raise ConfigError(f"{_WHAT}: filter_subject must be a subject, got {subject!r}")
        self.filter_subject: str | None = subject
        self.ack_wait = check_seconds(_WHAT, "ack_wait", options.pop("ack_wait", 10))
        self.fetch_timeout = check_seconds(_WHAT, "fetch_timeout", options.pop("fetch_timeout", 1))
        self.connect_timeout = check_seconds(
            _WHAT, "connect_timeout", options.pop("connect_timeout", 2)
        )
        self.lease_ttl = check_seconds(_WHAT, "lease_ttl", options.pop("lease_ttl", 15))
        check_no_more(_WHAT, options, INGEST_OPTIONS)
        self.consumer = ingest_consumer_name(name)
        self._counts = {"appended": 0, "duplicates": 0, "parked": 0}
        # Stream sequences parked: a message parked again after the consumer was taken
        # again from an earlier message (ADR 0046) replaces its record, and counts once.
        self._parked: set[int] = set()
        self._lag: int | None = None
        self._last_error: str | None = None
        self._retrying = False

    def stats(self) -> dict[str, Any]:
        """``appended``, ``duplicates``, ``parked``, ``lag`` (messages the durable
        consumer has not delivered yet), ``last_error`` and ``retrying`` (the replica's
        store is failing: waiting out a backoff)."""
        return {
            **self._counts,
            "lag": self._lag,
            "last_error": self._last_error,
            "retrying": self._retrying,
        }

    # -- running ------------------------------------------------------------------------------

    def run(self, store: BusStore, stop: threading.Event) -> None:
        """Pull, append, acknowledge, park, until ``stop`` is set.

        Raises:
            StorageError: the store's backend keeps no consumers.
            LeaseHeld: never (it waits for the lease instead).
        """
        keeper = store.backend
        if not isinstance(keeper, KeepsConsumers):
            raise StorageError(
                f"{_WHAT} {self.name}: the {keeper.name} backend keeps no consumers, so it "
                "cannot keep parked messages"
            )
        keeper.ensure_consumer(self.consumer, len(store), (">",))
        # The pull loop renews the lease itself (between batches), so no heartbeat is kept.
        lease = Lease(keeper, self.consumer, new_holder(), self.lease_ttl)
        if lease.take(wait=True, stop=stop) is None:
            return
        applier = Applier(
            store, keeper, self.consumer, lease.holder, mirror=self.mirror, lease_ttl=self.lease_ttl
        )
        thread = NatsThread(self.url, f"ingest-{self.name}", connect_timeout=self.connect_timeout)
        try:
            self._pull(thread, applier, stop)
        finally:
            thread.close()
            lease.release()

    def _pull(self, thread: NatsThread, applier: Applier, stop: threading.Event) -> None:
        puller: Puller | None = None
        ahead: concurrent.futures.Future[list[Msg]] | None = None
        renewed = time.monotonic()
        failing = 0  # storage failures in a row
        # At start: what a predecessor held when it died is delivered again at once.
        rewind, start = True, None
        rewound = -float("inf")
        while not stop.is_set():
            if time.monotonic() - renewed > self.lease_ttl / 3:
                try:
                    applier.keeper.acquire_lease(self.consumer, applier.holder, self.lease_ttl)
                    renewed = time.monotonic()
                    self._retrying = False
                except StorageError as exc:
                    failing = self._storage_failed(exc, failing, stop)
                    continue
            try:
                if puller is None:
                    subscribing = self._subscribe(thread, rewind, start)
                    puller = thread.call(subscribing, self.connect_timeout * 5)
                    if rewind:
                        rewind, start, rewound = False, None, time.monotonic()
                if ahead is None:
                    ahead = thread.submit(self._fetch(puller))
                messages = ahead.result(self.fetch_timeout + 10)
                # The next pull travels while this batch is applied.
                ahead = thread.submit(self._fetch(puller)) if messages else None
            except ConfigError:
                raise
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                ahead = None
                self._last_error = describe(exc)
                logger.warning("%s %s: %s; retrying", _WHAT, self.name, self._last_error)
                stop.wait(_RETRY)
                continue
            if not messages:
                continue
            failing, resume_at = self._apply(thread, applier, messages, stop)
            # A mirror's gap: delivery again from what it needs, at most once per ack wait
            # (a gap the stream itself has is waited on, not taken again and again).
            if resume_at is not None and time.monotonic() - rewound > self.ack_wait:
                self._drop(thread, puller, ahead)
                puller, ahead, rewind, start = None, None, True, resume_at
        if ahead is not None:
            ahead.cancel()

    def _drop(
        self,
        thread: NatsThread,
        puller: Puller,
        ahead: concurrent.futures.Future[list[Msg]] | None,
    ) -> None:
        """Stop pulling through ``puller``: what it delivered and was not acknowledged is
        delivered again by the consumer taken again from where the mirror needs it."""
        if ahead is not None:
            ahead.cancel()
        try:
            thread.call(puller.stop(), self.connect_timeout * 5)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            logger.warning("%s %s: could not stop pulling: %s", _WHAT, self.name, exc)

    def _apply(
        self, thread: NatsThread, applier: Applier, messages: list[Msg], stop: threading.Event
    ) -> tuple[int, int | None]:
        """Apply ``messages``, trying again while the replica's store fails (nothing of the
        batch is committed then, and the batch is kept, so the log's order is kept too);
        when stopped first, hand them back to the server. Return the failures in a row, and
        where a mirror that found a gap wants delivery from (:attr:`Outcome.resume_at`)."""
        failing = 0
        while True:
            try:
                outcome = self._handle(thread, applier, messages)
                self._retrying = False
                return 0, outcome.resume_at
            except StorageError as exc:
                failing = self._storage_failed(exc, failing, stop)
                if stop.is_set():
                    self._redeliver(thread, messages)
                    return failing, None

    def _storage_failed(self, exc: StorageError, failing: int, stop: threading.Event) -> int:
        """Note a failure of the replica's store (a database restarted) and wait before
        the next try (:func:`~chanlog.bus.backoff.storage_retry_pause`). Return the failures
        in a row."""
        self._last_error = f"StorageError: {exc}"
        self._retrying = True
        pause = storage_retry_pause(failing + 1)
        logger.warning("%s %s: %s; retrying in %.1f s", _WHAT, self.name, exc, pause)
        stop.wait(pause)
        return failing + 1

    def _redeliver(self, thread: NatsThread, messages: list[Msg]) -> None:
        """Ask the server to deliver ``messages`` again soon (not waiting out the ack wait);
        if it cannot be reached, the ack wait brings them back anyway."""
        try:
            thread.call(_settle(messages, [WAIT] * len(messages)), self.connect_timeout * 5)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            logger.warning("%s %s: could not hand messages back: %s", _WHAT, self.name, exc)

    async def _subscribe(self, thread: NatsThread, rewind: bool, start: int | None) -> Puller:
        client = await thread.connect()
        settings = DurableSettings(
            self.stream,
            self.durable,
            self.ack_wait,
            self.filter_subject,
            max(self.batch * 4, 1000),
        )
        await open_durable(client.jetstream(), settings, rewind=rewind, start=start)
        puller = Puller(client, self.stream, self.durable)
        await puller.start()
        return puller

    async def _fetch(self, puller: Puller) -> list[Msg]:
        messages = await puller.fetch(self.batch, self.fetch_timeout)
        self._lag = puller.pending if messages else 0
        return messages

    def _handle(self, thread: NatsThread, applier: Applier, messages: list[Msg]) -> Outcome:
        incoming = [
            Incoming(
                dict(message.headers) if message.headers else None,
                message.data,
                message.metadata.sequence.stream,
                message.metadata.num_delivered or 1,
            )
            for message in messages
        ]
        outcome = applier.apply(incoming)
        self._count(outcome)
        # Only now, with the appends and the parked records committed, tell the server.
        thread.call(_settle(messages, outcome.verdicts), self.connect_timeout * 5)
        return outcome

    def _count(self, outcome: Outcome) -> None:
        self._counts["appended"] += outcome.appended
        self._counts["duplicates"] += outcome.duplicates
        self._parked.update(parked.offset for parked in outcome.parked)
        self._counts["parked"] = len(self._parked)
        if outcome.parked:
            self._last_error = outcome.parked[-1].error
        if outcome.waiting is not None:
            self._last_error = outcome.waiting
            logger.warning("%s %s: %s", _WHAT, self.name, outcome.waiting)

    def __repr__(self) -> str:
        return f"NatsIngest(name={self.name!r}, stream={self.stream!r}, durable={self.durable!r})"


async def _settle(messages: Sequence[Msg], verdicts: Sequence[str]) -> None:
    """Acknowledge, terminate (parked: never redelivered) or ask for a later redelivery."""
    for message, verdict in zip(messages, verdicts, strict=True):
        if verdict == ACK:
            await message.ack()
        elif verdict == PARK:
            await message.term()
        else:
            await message.nak(delay=1.0)
