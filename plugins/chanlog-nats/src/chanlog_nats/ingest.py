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
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.backoff import storage_retry_pause
from chanlog.bus.ingest import ingest_consumer_name
from chanlog.bus.lease import Lease, new_holder
from chanlog.bus.source import BusStore
from chanlog.errors import ConfigError, LeaseHeld, StorageError
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


@dataclasses.dataclass
class _Pulling:
    """Where the pull loop stands with its durable consumer.

    Attributes:
        puller: pulls from the consumer (``None``: subscribe first, creating the consumer
            when missing).
        ahead: the next pull, travelling while a batch is applied.
        rewind: take delivery again when subscribing (ADR 0046): at start, what a
            predecessor held when it died is delivered again at once.
        start: the stream message to take delivery again from (``None``: the consumer's
            acknowledgement floor).
        rewound: when delivery was last taken again (monotonic seconds).
        vanished: the consumer went missing under this ingest (deleted, or its stream
            was): a mirror's is created again from the replica's next record, which it
            had reached, not from the stream's first message.
    """

    puller: Puller | None = None
    ahead: concurrent.futures.Future[list[Msg]] | None = None
    rewind: bool = True
    start: int | None = None
    rewound: float = -float("inf")
    vanished: bool = False


class NatsIngest:
    """Feeds a store from a JetStream stream (see the module docs).

    Args:
        name: the ingest's name (its parked messages: consumer ``ingest:<name>``).
        **options: see below.

    Keyword options (the keys of an ``[ingest.NAME]`` table):

        stream: the stream to pull from.
        durable: the JetStream durable consumer (created, pulling from the first
            message, when missing; a mirror's deleted under it, or with its stream, is
            created again from the replica's next record).
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

    accepted_options = INGEST_OPTIONS
    """Checked when a configuration is read, before anything is opened."""
    required_options = ("stream", "durable")

    def __init__(self, *, name: str, **options: Any) -> None:
        self.name = name
        # A typo is named as such, before the option it misspells is found missing.
        check_no_more(
            _WHAT, {k: v for k, v in options.items() if k not in INGEST_OPTIONS}, INGEST_OPTIONS
        )
        for required in self.required_options:
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
        self._logged: str | None = None  # the NATS failure last logged (said once, not each retry)
        self._retrying = False

    def stats(self) -> dict[str, Any]:
        """``appended``, ``duplicates``, ``parked``, ``lag`` (messages the durable
        consumer has not delivered yet; ``None`` while not known, e.g. while the consumer
        or its stream is missing), ``last_error`` and ``retrying`` (the replica's store is
        failing: waiting out a backoff)."""
        return {
            **self._counts,
            "lag": self._lag,
            "last_error": self._last_error,
            "retrying": self._retrying,
        }

    # -- running ------------------------------------------------------------------------------

    def _refuse_snapshots_of_its_own(self, store: BusStore) -> None:
        """A mirror's store must append nothing but the node's records: a
        ``snapshot-created`` of its own would take the offset the node's next record needs,
        and every message after it would be parked or wait (ADR 0078). A policy that plans
        no snapshot (``never``) is the one it takes; one that cannot say is refused too."""
        policy = getattr(store, "snapshot_policy", None)
        if policy is None:
            return
        plans = getattr(policy, "next_snapshot_at", None)
        if callable(plans) and plans(last_snapshot_offset=None) is None:
            return
        name = getattr(policy, "name", type(policy).__name__)
        raise ConfigError(
            f"{_WHAT} {self.name}: a mirror appends only the node's records, and this store "
            f"takes snapshots of its own (snapshot policy {name!r}), whose records would take "
            "the offsets of the node's: set [snapshots] policy = \"never\" in the replica's "
            "configuration (or mirror = false to append the stream's events as new ones)",
            key="snapshots.policy",
        )

    def run(self, store: BusStore, stop: threading.Event) -> None:
        """Pull, append, acknowledge, park, until ``stop`` is set.

        Raises:
            StorageError: the store's backend keeps no consumers.
            ConfigError: a mirror's store takes snapshots of its own (ADR 0078).
            LeaseHeld: never (it waits for the lease instead).
        """
        if self.mirror:
            self._refuse_snapshots_of_its_own(store)
        keeper = store.backend
        if not isinstance(keeper, KeepsConsumers):
            raise StorageError(
                f"{_WHAT} {self.name}: the {keeper.name} backend keeps no consumers, so it "
                "cannot keep parked messages"
            )
        keeper.ensure_consumer(self.consumer, len(store), (">",))
        # The pull loop renews the lease itself (between batches), so no heartbeat is kept.
        lease = Lease(keeper, self.consumer, new_holder(), self.lease_ttl)
        applier = Applier(
            store,
            keeper,
            self.consumer,
            lease.holder,
            mirror=self.mirror,
            lease_ttl=self.lease_ttl,
            source=self.stream,
        )
        thread = NatsThread(self.url, f"ingest-{self.name}", connect_timeout=self.connect_timeout)
        try:
            while lease.take(wait=True, stop=stop) is not None:
                try:
                    self._pull(thread, applier, stop)
                    return
                except LeaseHeld as lost:
                    # The store was away longer than the lease lasts and another ingest of
                    # this name took it over: wait for it as at start, as a consumer's
                    # runner does, rather than end (no ingest would feed the replica once
                    # the other stops).
                    self._lag = None
                    self._last_error = f"LeaseHeld: {lost}"
                    logger.warning(
                        "%s %s: lost its lease (%s); waiting to take it again",
                        _WHAT,
                        self.name,
                        lost,
                    )
        finally:
            thread.close()
            lease.release()

    def _pull(self, thread: NatsThread, applier: Applier, stop: threading.Event) -> None:
        """Pull and apply until ``stop`` is set.

        Raises:
            LeaseHeld: another ingest of this name holds the lease now (this one stopped
                pulling).
        """
        pulling = _Pulling()
        renewed = time.monotonic()
        failing = 0  # storage failures in a row
        try:
            while not stop.is_set():
                if time.monotonic() - renewed > self.lease_ttl / 3:
                    try:
                        applier.keeper.acquire_lease(self.consumer, applier.holder, self.lease_ttl)
                        renewed = time.monotonic()
                        self._retrying = False
                    except StorageError as exc:
                        failing = self._storage_failed(exc, failing, stop)
                        continue
                messages = self._next_batch(thread, pulling, applier.store, stop)
                if not messages:
                    continue
                failing, resume_at = self._apply(thread, applier, messages, stop)
                # A mirror's gap: delivery again from what it needs, at most once per ack
                # wait (a gap the stream itself has is waited on, not taken again and again).
                if resume_at is not None and time.monotonic() - pulling.rewound > self.ack_wait:
                    self._drop(thread, pulling)
                    pulling.rewind, pulling.start = True, resume_at
        except LeaseHeld:
            self._drop(thread, pulling)  # the lease's new holder takes delivery again
            raise
        if pulling.ahead is not None:
            pulling.ahead.cancel()

    def _next_batch(
        self, thread: NatsThread, pulling: _Pulling, store: BusStore, stop: threading.Event
    ) -> list[Msg]:
        """The next messages (subscribing first when needed), or none: none came, the
        consumer turned out to be missing (then the next call subscribes again), or NATS
        failed (then after a pause)."""
        try:
            if pulling.puller is None:
                needed = self._needed(store) if pulling.vanished else None
                subscribing = self._subscribe(thread, pulling.rewind, pulling.start, needed)
                pulling.puller = thread.call(subscribing, self.connect_timeout * 5)
                pulling.vanished = False
                if pulling.rewind:
                    pulling.rewind, pulling.start = False, None
                    pulling.rewound = time.monotonic()
            puller = pulling.puller
            if pulling.ahead is None:
                pulling.ahead = thread.submit(self._fetch(puller))
            messages: list[Msg] = pulling.ahead.result(self.fetch_timeout + 10)
            # The next pull travels while this batch is applied.
            pulling.ahead = thread.submit(self._fetch(puller)) if messages else None
            if not messages and puller.in_doubt is not None:
                if self._consumer_gone(thread, puller.in_doubt):
                    self._drop(thread, pulling)
                    pulling.vanished = True
            else:
                self._logged = None  # NATS answers: its next failure is logged anew
        except ConfigError:
            raise
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            pulling.ahead = None
            self._nats_failed(exc)
            stop.wait(_RETRY)
            return []
        return messages

    def _consumer_gone(self, thread: NatsThread, doubt: str) -> bool:
        """Whether the durable consumer is missing, asked after a pull that raised a
        doubt (:attr:`Puller.in_doubt`): only then, so an idle stream costs no more than its
        pulls. A missing consumer is said in ``last_error`` and the log.

        Raises:
            nats.errors.Error: NATS failed (the question is asked again after the next
                doubtful pull).
        """

        async def ask() -> None:
            client = await thread.connect()
            await client.jetstream().consumer_info(self.stream, self.durable)

        try:
            thread.call(ask(), self.connect_timeout * 5)
        except NotFoundError:
            self._lag = None
            self._last_error = (
                f"the durable consumer {self.durable} of stream {self.stream} no longer "
                f"exists ({doubt}): deleted, or its stream was; creating it again once "
                "the stream is there"
            )
            logger.warning("%s %s: %s", _WHAT, self.name, self._last_error)
            self._logged = None
            return True
        return False

    def _nats_failed(self, exc: BaseException) -> None:
        """Note a NATS failure in ``last_error``; log it when it differs from the last one
        logged (a stream missing for an hour is one line, not one per retry)."""
        self._last_error = describe(exc)
        if self._last_error != self._logged:
            logger.warning("%s %s: %s; retrying", _WHAT, self.name, self._last_error)
            self._logged = self._last_error

    def _drop(self, thread: NatsThread, pulling: _Pulling) -> None:
        """Stop pulling through ``pulling``'s puller, if any: what it delivered and was not
        acknowledged is delivered again by the consumer subscribed next (taken again from
        where the mirror needs it, or created again)."""
        puller, ahead = pulling.puller, pulling.ahead
        pulling.puller, pulling.ahead = None, None
        if ahead is not None:
            ahead.cancel()
        if puller is None:
            return
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

    async def _subscribe(
        self, thread: NatsThread, rewind: bool, start: int | None, needed: int | None
    ) -> Puller:
        client = await thread.connect()
        settings = DurableSettings(
            self.stream,
            self.durable,
            self.ack_wait,
            self.filter_subject,
            max(self.batch * 4, 1000),
        )
        await open_durable(client.jetstream(), settings, rewind=rewind, start=start, needed=needed)
        puller = Puller(client, self.stream, self.durable)
        await puller.start()
        return puller

    def _needed(self, store: BusStore) -> int | None:
        """Where a durable consumer that vanished is created again, for a mirror of a
        whole stream: at the replica's next offset
        (:func:`~chanlog_nats.durable.open_durable`). ``None`` (the stream's first
        message) otherwise, or when the store cannot say: the replica recognises what it
        holds."""
        if not self.mirror or self.filter_subject is not None:
            return None
        try:
            return len(store)
        except StorageError:
            return None

    async def _fetch(self, puller: Puller) -> list[Msg]:
        messages = await puller.fetch(self.batch, self.fetch_timeout)
        if messages:
            self._lag = puller.pending
        elif puller.in_doubt is None:  # an idle consumer: it has nothing left
            self._lag = 0
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
