"""The ``nats-relay`` handler: a durable consumer that publishes every record it is handed
to a JetStream stream, in offset order, exactly once (ADR 0028)::

    [consumers.to-nats]
    handler = "nats-relay"
    stream = "NODE_A"              # created (subjects "<prefix>.>") or checked at start
    url = "nats://127.0.0.1:4222"
    duplicate_window = 120         # seconds
    storage = "file"               # or "memory"
    window = 256                   # publishes in flight

The runner hands records on its own thread; the relay's client runs on an event loop of its
own (:class:`~chanlog_nats.client.NatsThread`) and publishes them pipelined
(:class:`~chanlog_nats.pipeline.Pipeline`). The relay *settles later*
(:class:`~chanlog.bus.SettlesLater`): the runner commits the consumer's position only up to
the oldest record not yet acknowledged. It *tracks its position*
(:class:`~chanlog.bus.TracksPosition`): at start it reads the stream's last record, so a
record published just before a crash, whose position was not committed, is not published
again, however long the relay was down. It goes on from the stream's end only when that end
continues what this log relayed (:class:`~chanlog_nats.tail_check.TailCheck`, ADR 0049).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import nats.errors

from chanlog import codec
from chanlog.bus.subjects import check_prefix, subject_of
from chanlog.errors import ChanlogError, ConfigError, IntegrityError, InvalidArgument, NotFound
from chanlog.events.base import Event
from chanlog.records import RecordedEvent
from chanlog.telemetry import RelayTelemetry, telemetry_of
from chanlog_nats.client import NatsThread, describe
from chanlog_nats.mapping import Envelope, headers_of
from chanlog_nats.options import (
    DEFAULT_URL,
    check_choice,
    check_int,
    check_name,
    check_no_more,
    check_seconds,
    check_url,
)
from chanlog_nats.pipeline import Entry, Pipeline
from chanlog_nats.stream import StreamSettings, read_tail
from chanlog_nats.tail_check import TailCheck

__all__ = ["RELAY_OPTIONS", "BodyCheck", "LogCheck", "NatsRelay"]

logger = logging.getLogger("chanlog.nats")

RELAY_OPTIONS = (
    "stream",
    "url",
    "prefix",
    "duplicate_window",
    "storage",
    "replicas",
    "window",
    "ack_timeout",
    "connect_timeout",
)
"""Every option of the ``nats-relay`` handler."""

_WHAT = "nats-relay"


class BodyCheck:
    """Accepts a message whose body has the event id its ``Nats-Msg-Id`` claims.

    Args:
        types: the event types known (wire name → class).
    """

    def __init__(self, types: Mapping[str, type[Event]]) -> None:
        self._types = types

    def __call__(self, envelope: Envelope, body: bytes) -> str | None:
        try:
            event = codec.decode_event(envelope.event_type, body, self._types)
        except ChanlogError as exc:
            return f"its body does not decode ({exc})"
        if event.event_id != envelope.event_id:
            return f"its body's event id is {event.event_id}, not {envelope.event_id}"
        return None


class LogCheck(BodyCheck):
    """Accepts a message that is a record of this store's log: the body has the claimed
    id, and the log holds that id, with that chain hash, at the claimed offset (so a
    message someone else put in the stream never makes the relay skip a record).

    Args:
        store: the relay's store.
    """

    def __init__(self, store: Any) -> None:
        super().__init__(store.plugins.event_types)
        self._store = store

    def __call__(self, envelope: Envelope, body: bytes) -> str | None:
        problem = super().__call__(envelope, body)
        return problem if problem is not None else self.holds(envelope)

    def holds(self, envelope: Envelope) -> str | None:
        """Why the log does not hold the record ``envelope`` claims at its offset
        (``None``: it does, with that id and chain hash)."""
        offset = envelope.offset
        record = next(iter(self._store.read_range(offset, offset + 1)), None)
        if record is None:
            return f"this log has no offset {offset}"
        if record.event_id != envelope.event_id or record.chain_hash != envelope.chain_hash:
            return f"this log holds another record at offset {offset}"
        return None


class NatsRelay:
    """Publishes records to a JetStream stream (see the module docs).

    Keyword options (``**options``, the keys of a ``[consumers.NAME]`` table):

        stream: the stream's name.
        url: the NATS server (default ``nats://127.0.0.1:4222``).
        prefix: the subject prefix (default: the store's bus prefix).
        duplicate_window: seconds the server remembers a message id (default 120).
        storage: ``"file"`` (default) or ``"memory"``.
        replicas: stream replicas on a clustered server (default 1).
        window: the most publishes in flight (default 256).
        ack_timeout: seconds after which an unacknowledged publish counts as lost (5).
        connect_timeout: seconds the start waits for the server before going on
            without it (the relay then keeps trying) (default 2).

    Raises:
        ConfigError: a bad option.
    """

    accepted_options = RELAY_OPTIONS
    """Checked when a configuration is read, before anything is opened."""
    required_options = ("stream",)

    def __init__(self, **options: Any) -> None:
        check_no_more(
            _WHAT, {k: v for k, v in options.items() if k not in RELAY_OPTIONS}, RELAY_OPTIONS
        )
        if "stream" not in options:
            raise ConfigError(f"{_WHAT}: stream is required (the JetStream stream's name)")
        self.stream = check_name(_WHAT, "stream", options.pop("stream"))
        self.url = check_url(_WHAT, options.pop("url", DEFAULT_URL))
        prefix = options.pop("prefix", None)
        if prefix is not None:
            try:
                check_prefix(prefix)
            except InvalidArgument as exc:
                raise ConfigError(f"{_WHAT}: {exc}", key="prefix") from None
        self._prefix: str | None = prefix
        self._duplicate_window = check_seconds(
            _WHAT, "duplicate_window", options.pop("duplicate_window", 120)
        )
        self._storage = check_choice(
            _WHAT, "storage", options.pop("storage", "file"), ("file", "memory")
        )
        self._replicas = check_int(_WHAT, "replicas", options.pop("replicas", 1))
        self.window = check_int(_WHAT, "window", options.pop("window", 256))
        self._ack_timeout = check_seconds(_WHAT, "ack_timeout", options.pop("ack_timeout", 5))
        self._connect_timeout = check_seconds(
            _WHAT, "connect_timeout", options.pop("connect_timeout", 2)
        )
        check_no_more(_WHAT, options, RELAY_OPTIONS)
        self._thread: NatsThread | None = None
        self._pipeline: Pipeline | None = None
        self._next_offset = 0  # the offset after the last record handed over
        self._telemetry: RelayTelemetry | None = None  # when the store has telemetry

    # -- the handler protocols ------------------------------------------------------------------

    def position(self, consumer: str) -> int | None:
        """The offset after the stream's last record (``None``: the stream is empty or
        missing, or NATS cannot be reached now; the pipeline reconciles once it can).

        Once bound (a runner binds first), the record :meth:`bind` checked against the log;
        before, the last message that claims to be a record, unchecked."""
        pipeline = self._pipeline
        if pipeline is not None:
            stored = pipeline.tail_offset
            return None if stored is None else stored + 1
        thread = self._connection(consumer)
        try:
            client = thread.connect_now(self._connect_timeout)
            tail = thread.call(
                read_tail(client.jetstream(), self.stream), self._connect_timeout * 3
            )
        except (ChanlogError, TimeoutError, OSError, nats.errors.Error) as exc:
            logger.warning(
                "%s %s: cannot read the stream's end yet: %s", _WHAT, consumer, _said(exc)
            )
            return None
        return None if tail is None or tail.offset is None else tail.offset + 1

    def bind(self, store: Any, consumer: str) -> None:
        """Learn the store's prefix, create or check the stream, and start publishing.

        Raises:
            ConfigError: the stream exists with other subjects or storage.
            IntegrityError: the stream does not continue what this log relayed to it: its
                last record is not this log's record at the offset it claims (the log lost
                records and others took their offsets, or someone else wrote to the
                stream), or it is gone or holds none of the records the consumer relayed
                (ADR 0049). Nothing is published.
        """
        if self._prefix is None:
            self._prefix = store.bus.prefix
        thread = self._connection(consumer)
        settings = StreamSettings(
            self.stream,
            (f"{self._prefix}.>",),
            self._duplicate_window,
            self._storage,
            self._replicas,
        )
        # A message that is not a record at all is looked past; a record that is not this
        # log's stops the relay (TailCheck), since going on after it would skip records.
        records = BodyCheck(store.plugins.event_types)
        in_log = LogCheck(store).holds
        check = TailCheck(
            consumer,
            self.stream,
            in_log,
            _relayed(store, consumer),
            functools.partial(_first_relayed, store, consumer),
        )
        pipeline = Pipeline(thread, settings, self.window, self._ack_timeout, records, check)
        self._check_stream(thread, pipeline)
        self._pipeline = pipeline
        pipeline.start()
        telemetry = telemetry_of(store)
        if telemetry is not None:
            self._telemetry = telemetry.relay(consumer, "nats", self._figures)

    def _check_stream(self, thread: NatsThread, pipeline: Pipeline) -> None:
        """Reconcile now, if NATS answers: a stream that conflicts fails the start."""
        try:
            thread.connect_now(self._connect_timeout)
            thread.call(pipeline.reconcile(), self._connect_timeout * 3)
        except (ConfigError, IntegrityError):
            raise
        except (ChanlogError, TimeoutError, OSError, nats.errors.Error) as exc:
            logger.warning(
                "%s: NATS at %s cannot be reached now (%s); records wait until it can",
                _WHAT,
                self.url,
                _said(exc),
            )

    def _connection(self, consumer: str) -> NatsThread:
        if self._thread is None:
            self._thread = NatsThread(
                self.url, f"relay-{consumer}", connect_timeout=self._connect_timeout
            )
        return self._thread

    def __call__(self, record: RecordedEvent) -> None:
        """Hand ``record`` over for publishing (waits while the window is full)."""
        pipeline = self._pipeline
        if pipeline is None:
            raise ChanlogError(f"{_WHAT}: bind() it to a store first (a runner does)")
        offset = record.offset
        if offset < self._next_offset:  # handed over before (a retry): already in the window
            return
        headers = headers_of(record)
        subject = subject_of(record, self._prefix or "")
        if self._telemetry is not None:
            carried = self._telemetry.published(record, subject)
            if carried:  # a trace to continue (ADR 0062); chanlog's own headers win
                headers = {**carried, **headers}
        pipeline.offer(
            Entry(offset, headers["Nats-Msg-Id"], subject, record.event.canonical_json(), headers)
        )
        self._next_offset = offset + 1

    def settled(self) -> int | None:
        """The oldest record handed over and not yet acknowledged (``None``: none)."""
        pipeline = self._pipeline
        return None if pipeline is None else pipeline.settled()

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every record handed over is acknowledged."""
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.settle(timeout)

    def interrupt(self) -> None:
        """Make the runner's thread stop waiting for room in the window (NATS away for
        long): the record in hand raises, is not taken, and the runner either stops (its
        stop was asked) or hands it over again after its backoff. What a worker stopping
        on SIGTERM should call (ADR 0028)."""
        if self._pipeline is not None:
            self._pipeline.interrupt()

    def failure(self) -> str | None:
        """Why records wait now (NATS away, JetStream silent, a stream that conflicts), or
        ``None`` (:class:`chanlog.bus.ReportsFailure`: ``chanlog run`` shows it)."""
        return None if self._pipeline is None else self._pipeline.failure

    def stats(self) -> dict[str, Any]:
        """Published count, records in flight, reconciliations and the current failure."""
        pipeline = self._pipeline
        if pipeline is None:
            return {"published": 0, "in_flight": 0, "reconciliations": 0, "last_error": None}
        return {
            "published": pipeline.published,
            "in_flight": pipeline.in_flight(),
            "reconciliations": pipeline.reconciliations,
            "last_error": pipeline.failure,
        }

    def _figures(self) -> dict[str, Any]:
        """What the relay's telemetry reads: :meth:`stats`, with ``settled`` (the oldest
        record handed over and not acknowledged, ``None``: none) and ``next_offset``."""
        return {**self.stats(), "settled": self.settled(), "next_offset": self._next_offset}

    def close(self) -> None:
        """Stop publishing and close the connection (what is not acknowledged stays
        unsettled: the runner hands it over again next time). Idempotent."""
        if self._pipeline is not None:
            self._pipeline.close()
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def __repr__(self) -> str:
        return f"NatsRelay(stream={self.stream!r}, url={self.url!r})"


def _relayed(store: Any, consumer: str) -> int | None:
    """The consumer's committed position when it has relayed records (``None``: it has
    not, or there is no such consumer: its stream may begin where it starts)."""
    try:
        state = store.bus.consumers.state(consumer)
    except NotFound:
        return None
    # A consumer that starts at "latest" is past offset 0 without having relayed anything.
    return state.position if state.position > 0 and state.handled > 0 else None


def _first_relayed(store: Any, consumer: str, start: int, end: int) -> int | None:
    """The first offset in ``[start, end)`` whose record the consumer's subjects match."""
    subjects = store.bus.subject_filter(list(store.bus.consumers.state(consumer).subjects))
    for stored in store.backend.read(start, end):
        if subjects.accepts(stored.event_type, stored.streams):
            return int(stored.offset)
    return None


def _said(exc: BaseException) -> str:
    """``exc`` in words: chanlog's own errors say what they mean, NATS's are described."""
    return str(exc) if isinstance(exc, ChanlogError | OSError | TimeoutError) else describe(exc)
