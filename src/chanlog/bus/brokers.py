"""Brokers: how committed records reach live subscribers (DESIGN section 10).

The store hands every committed record, in offset order, to the ``event-appended`` signal
(its local notification, always sent) and then to its broker's :meth:`Broker.publish`. A
live subscription (:meth:`chanlog.EventStore.subscribe`) receives records through the
broker's :meth:`Broker.subscribe`.

The built-in ``embedded`` broker is in-process: the signal *is* its transport, so it
publishes nothing more and subscribes a subscription by connecting it to the signal. A
broker that reaches other processes (``nats`` in ``plugins/chanlog-nats``) publishes each
record to its network and subscribes by subject pattern there, so a subscriber in another
process or on another machine receives the same records. Brokers are registered with
``chanlog_register_brokers(register)`` and chosen by ``[bus] broker``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from chanlog.bus.subjects import DEFAULT_PREFIX, SubjectFilter, SubjectPattern
from chanlog.errors import PluginError
from chanlog.records import RecordedEvent
from chanlog.signals import event_appended

__all__ = [
    "DEFAULT_BROKER",
    "Broker",
    "BrokerFactory",
    "BusContext",
    "EmbeddedBroker",
    "LiveReceiver",
    "open_broker",
]

DEFAULT_BROKER = "embedded"
"""The broker of a store whose settings name none."""


@attrs.frozen
class BusContext:
    """What a broker is opened with.

    Attributes:
        sender: the store whose records it carries (the ``event-appended`` sender).
        prefix: the node's subject prefix.
        group_of: event type → its group (``None`` for a type no plugin registers).
        decode: ``decode(event_type, payload, offset, event_id, chain_hash)`` → the
            :class:`~chanlog.records.RecordedEvent` of a record received from elsewhere:
            the payload is canonical JSON, the event id is recomputed from it and a
            mismatch is a :class:`~chanlog.errors.IntegrityError`.
    """

    sender: object
    prefix: str = DEFAULT_PREFIX
    group_of: Callable[[str], str | None] = attrs.field(default=lambda _type: None)
    decode: Callable[[str, bytes, int, str, str], RecordedEvent] | None = None

    def subject_filter(self, patterns: Sequence[SubjectPattern]) -> SubjectFilter:
        """``patterns`` compiled for this node."""
        return SubjectFilter(patterns, self.prefix, self.group_of)


@runtime_checkable
class LiveReceiver(Protocol):
    """What a broker delivers live records to: a store's
    :class:`~chanlog.subscriptions.Subscription`.

    It is also a blinker receiver (``receiver(sender, record=...)``), which is how the
    embedded broker connects it; a broker that delivers from elsewhere calls
    :meth:`receive`, from whatever thread its client runs, once per record, in offset
    order. Either way the receiver applies its own subject filter and fills any gap from
    the log, so a broker may deliver a record it does not match.
    """

    subjects: SubjectFilter | None
    """The patterns the receiver wants (``None``: everything)."""

    def __call__(self, sender: Any, *, record: RecordedEvent) -> None:
        """Receive a record through the ``event-appended`` signal."""
        ...

    def receive(self, record: RecordedEvent) -> None:
        """Receive a record from elsewhere (thread-safe)."""
        ...


@runtime_checkable
class Broker(Protocol):
    """Carries committed records to live subscribers.

    A broker is opened once per store (its factory gets ``context=``, a
    :class:`BusContext`, and the options of ``[bus]``), is told about every commit in
    offset order and closed with the store.
    """

    name: str
    """The registered name."""

    publishes: bool
    """False when the ``event-appended`` signal already carries everything this broker
    delivers (the store then never calls :meth:`publish`)."""

    def publish(self, records: Sequence[RecordedEvent]) -> None:
        """Carry committed ``records`` (in offset order, after the ``event-appended``
        signal) to subscribers beyond this process. Called from one thread at a time. A
        failure must not raise into the store (the records are committed): log it, retry,
        or say so through the broker's own API."""
        ...

    def subscribe(self, receiver: LiveReceiver) -> Callable[[], None]:
        """Start delivering live records to ``receiver``; return the function that stops."""
        ...

    def close(self) -> None:
        """Stop delivering and release connections. Idempotent."""
        ...


class BrokerFactory(Protocol):
    """What ``chanlog_register_brokers`` registers: ``factory(context=..., **options)``."""

    def __call__(self, *, context: BusContext, **options: Any) -> Broker: ...


class EmbeddedBroker:
    """The in-process broker: the ``event-appended`` signal is its transport.

    Args:
        context: the store it serves.
    """

    name = DEFAULT_BROKER
    publishes = False
    """Nothing to publish: the signal already carried the records."""

    def __init__(self, *, context: BusContext, **options: Any) -> None:
        if options:
            raise PluginError(
                f"the embedded broker takes no options, got {', '.join(sorted(options))}"
            )
        self._sender = context.sender

    def publish(self, records: Sequence[RecordedEvent]) -> None:
        """Nothing beyond the signal (see :attr:`publishes`)."""

    def subscribe(self, receiver: LiveReceiver) -> Callable[[], None]:
        """Connect ``receiver`` to the signal, strongly (it stays until it is stopped)."""
        event_appended.connect(receiver, sender=self._sender, weak=False)

        def stop() -> None:
            event_appended.disconnect(receiver, sender=self._sender)

        return stop

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "EmbeddedBroker()"


def open_broker(
    value: Broker | str | None,
    context: BusContext,
    lookup: Callable[[str, str], Any],
    options: dict[str, Any] | None = None,
) -> Broker:
    """``value`` itself, or the broker registered under that name (``None``:
    ``embedded``), opened with ``context`` and ``options``; ``lookup`` is
    :meth:`~chanlog.plugins.host.PluginHost.checked_lookup`, whose factories turn a
    plugin's failure into a :class:`~chanlog.errors.PluginError` naming it.

    Raises:
        PluginError: no such broker, or its factory failed.
    """
    if value is not None and not isinstance(value, str):
        if not isinstance(value, Broker):
            raise PluginError(
                f"broker must be a registered name or a Broker, got {type(value).__name__}"
            )
        return value
    broker: Broker = lookup("brokers", value or DEFAULT_BROKER)(context=context, **(options or {}))
    return broker
