"""A store's face on the bus (DESIGN section 10): its subject prefix, its broker, and its
durable consumers. Reached as :attr:`chanlog.EventStore.bus`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chanlog import codec
from chanlog.appending import CommitResult, Encoded, Work
from chanlog.backends.base import WriteTransaction
from chanlog.backends.consumer_store import KeepsConsumers, MovesConsumersInTransaction
from chanlog.bus.admin import ConsumerAdmin
from chanlog.bus.brokers import Broker, BusContext, open_broker
from chanlog.bus.handlers import Handler
from chanlog.bus.runner import ConsumerRunner
from chanlog.bus.source import BusStore
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.subjects import (
    DEFAULT_PREFIX,
    SubjectFilter,
    SubjectPattern,
    check_prefix,
    parse_patterns,
    subject_of,
)
from chanlog.errors import DecodeError, IntegrityError, InvalidArgument
from chanlog.events.base import Event
from chanlog.plugins.host import PluginHost
from chanlog.records import PositionMove, RecordedEvent

__all__ = ["Bus", "ConsumerMover"]


class ConsumerMover:
    """Commits a durable consumer's move with the records of one append: inside the write
    transaction where it :class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`,
    else right after the commit.

    Args:
        keeper: the backend keeping the consumer.
        move: the move.
    """

    def __init__(self, keeper: KeepsConsumers, move: PositionMove) -> None:
        self._keeper = keeper
        self.move = move
        self.moved = False

    def wrap(self, work: Work) -> Work:
        """``work`` followed, in its transaction, by the move (when the transaction can)."""

        def write(
            transaction: WriteTransaction,
            encoded: list[Encoded],
            expected: dict[str, int] | None,
            batch: bool,
        ) -> CommitResult:
            result = work(transaction, encoded, expected, batch)
            if isinstance(transaction, MovesConsumersInTransaction):
                transaction.move_consumer(self.move)
                self.moved = True
            return result

        return write

    def finish(self) -> None:
        """After the commit: apply the move, unless the transaction did."""
        if not self.moved:
            self._keeper.move_consumer(self.move)
            self.moved = True


class Bus:
    """The bus side of one store.

    Args:
        store: the store.
        broker: a broker name (default ``"embedded"``) or instance.
        prefix: the node's subject prefix (default ``"chanlog"``).
        options: further options for the broker's factory (``[bus]`` in chanlog.toml).
    """

    def __init__(
        self,
        store: BusStore,
        *,
        broker: Broker | str | None = None,
        prefix: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._host: PluginHost = store.plugins
        if options is not None and not isinstance(options, Mapping):
            raise InvalidArgument(f"broker_options must be a mapping, got {options!r}")
        self.prefix = check_prefix(DEFAULT_PREFIX if prefix is None else prefix)
        """The subject prefix of this node's records."""
        self.context = BusContext(
            sender=store, prefix=self.prefix, group_of=self.group_of, decode=self.decode_remote
        )
        self.broker: Broker = open_broker(
            broker, self.context, self._host.checked_lookup, dict(options or {})
        )
        """The broker live subscriptions go through."""
        self._admin = ConsumerAdmin(store, self.subject_filter)

    def group_of(self, event_type: str) -> str | None:
        """The group of a registered event type (``None``: not registered)."""
        cls = self._host.event_types.get(event_type)
        return None if cls is None else cls.group

    def subject_of(self, record: RecordedEvent) -> str:
        """The subject of a committed record of this node."""
        return subject_of(record, self.prefix)

    def subject_filter(
        self, patterns: str | Iterable[str] | Iterable[SubjectPattern]
    ) -> SubjectFilter:
        """Patterns compiled for this node (see :class:`~chanlog.bus.subjects.SubjectFilter`).

        Raises:
            InvalidArgument: a malformed pattern.
        """
        return SubjectFilter(parse_patterns(patterns), self.prefix, self.group_of)

    def decode_remote(
        self, event_type: str, payload: bytes, offset: int, event_id: str, chain_hash: str
    ) -> RecordedEvent:
        """The record a remote broker carried: canonical JSON ``payload`` of
        ``event_type``, whose id is recomputed and must be ``event_id``.

        Raises:
            DecodeError: the payload does not decode.
            IntegrityError: its id is not ``event_id``.
        """
        event: Event = codec.decode_event(
            event_type, payload, self._host.event_types, offset=offset
        )
        if event.event_id != event_id:
            raise IntegrityError(
                f"offset {offset}: the {event_type} received has id {event.event_id}, "
                f"not {event_id} as its message says",
                offset=offset,
            )
        if not chain_hash.startswith("0x") or len(chain_hash) != 66:
            raise DecodeError(
                f"offset {offset}: malformed chain hash {chain_hash!r}", offset=offset
            )
        return RecordedEvent(offset, event_id, event, chain_hash)

    def consumer(self, name: str, handler: Handler, **settings: Any) -> ConsumerRunner:
        """A runner for the durable consumer ``name`` handing matching records to
        ``handler``. ``settings`` are :class:`~chanlog.bus.spec.ConsumerSpec`'s fields
        (``subjects``, ``start``, ``max_deliver``, ``backoff``, ``commit_every``,
        ``commit_interval``, ``lease_ttl``, ``batch_size``).

        Run it with ``runner.run(stop_event)`` (until the event is set), ``runner.drain()``
        (up to the end of the log) or as a context manager with ``run_once()``.

        Raises:
            InvalidArgument: a bad setting or pattern.
            StorageError: the backend keeps no consumer positions.
        """
        return self.consumer_of(ConsumerSpec(name, **settings), handler)

    def consumer_of(self, spec: ConsumerSpec, handler: Handler) -> ConsumerRunner:
        """A runner for the consumer ``spec`` defines (see :meth:`consumer`)."""
        return ConsumerRunner(self._store, spec, handler, self.subject_filter(spec.subjects))

    def mover(self, move: PositionMove) -> ConsumerMover:
        """What commits a consumer's ``move`` with the records of one append (see
        :class:`ConsumerMover`)."""
        return ConsumerMover(self._admin.keeper(), move)

    @property
    def consumers(self) -> ConsumerAdmin:
        """List, inspect, reset, replay and drop durable consumers (no handler needed)."""
        return self._admin

    def close(self) -> None:
        """Close the broker."""
        self.broker.close()
