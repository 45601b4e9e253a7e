"""Handlers: what a durable consumer hands each matching record to (DESIGN section 10).

A handler is any callable taking a :class:`~chanlog.records.RecordedEvent`: a plain function,
a coroutine function (awaited on the runner's own event loop) or an object with
``__call__``. It returns ``None``, or the events to append to the same store: those are
committed in one write transaction with the consumer's new position (effectively once, like
eventsourcing's tracking records). Raising means "not handled": the runner tries again with
backoff, then parks the record.

Handlers are registered by name with ``chanlog_register_handlers(register)``:
``register(name, factory)``, ``factory(**options)`` building the handler from the options
of a ``[consumers.NAME]`` table. A handler may also implement the optional protocols below.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from chanlog.arguments import items_once
from chanlog.errors import InvalidArgument
from chanlog.events.base import Event
from chanlog.records import RecordedEvent
from chanlog.telemetry import ConsumerTelemetry, telemetry_of

__all__ = [
    "BindsToStore",
    "ClosesHandler",
    "Handler",
    "HandlerCall",
    "HandlerFactory",
    "Interruptible",
    "ReplaysBelowPosition",
    "ReportsFailure",
    "SettlesLater",
    "TracksPosition",
    "handler_call",
]

Appends = list[Event | Mapping[str, Any]]


class Handler(Protocol):
    """Handles one record; returns ``None`` or the events to append (or an awaitable of
    either)."""

    def __call__(self, record: RecordedEvent, /) -> Any: ...


class HandlerFactory(Protocol):
    """What ``chanlog_register_handlers`` registers: ``factory(**options) -> handler``.

    A factory may carry ``path_options``, a tuple of option names that hold file paths:
    in a configuration file those are resolved against the file's directory. A factory
    taking ``**options`` may carry ``accepted_options`` (every option it takes) and
    ``required_options`` (those it needs): a configuration is then checked against them
    when it is read, by every command, before a log is opened
    (:func:`chanlog.factories.accepted_options`).
    """

    def __call__(self, **options: Any) -> Handler: ...


@runtime_checkable
class TracksPosition(Protocol):
    """A handler that records, in its own storage and in the same transaction as its
    effects, how far it got: the runner resumes from there when that is further than the
    position the backend kept (the handler's effects are then exactly once)."""

    def position(self, consumer: str) -> int | None:
        """The next offset this handler has not applied for ``consumer`` (``None``:
        none yet)."""
        ...


@runtime_checkable
class ReplaysBelowPosition(Protocol):
    """A handler that keeps its own position (:class:`TracksPosition`) and can apply a
    record below it when an operator asks to replay that record, parked earlier: the
    runner hands a replayed record to :meth:`replay` instead of calling the handler, which
    would take any record below its position for one it applied. Without it, a replayed
    record is handed to the handler as any record (ADR 0052)."""

    def replay(self, record: RecordedEvent, /) -> Any:
        """Apply ``record``, which the handler never applied (it was parked), as the
        handler would have; returns what a handler returns. Called once per replay that
        succeeds, but again if the process dies before the runner records it: a replay
        must be applied once whatever it is handed."""
        ...


@runtime_checkable
class SettlesLater(Protocol):
    """A handler whose effect of a record becomes durable after it returns (a relay
    pipelining publishes and waiting for acknowledgements). The runner never commits a
    position beyond :meth:`settled`, and asks :meth:`settle` before it stops.

    A failure after the handler returned is the handler's to retry (it must not lose the
    record): :meth:`settled` simply stays behind it.
    """

    def settled(self) -> int | None:
        """The offset up to which (exclusive) every record handed over is durable
        (``None``: no record is pending, whatever was handed over is durable)."""
        ...

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything handed over is durable; return
        whether it is."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """A handler that may block on something outside the log (a broker that is away): the
    runner calls :meth:`interrupt` when it is asked to stop, so the record in hand is given
    up (it raises, and is handed over again next time) instead of holding the stop."""

    def interrupt(self) -> None:
        """Stop waiting; make the current call give up."""
        ...


@runtime_checkable
class ReportsFailure(Protocol):
    """A handler that can be behind for a reason of its own while it raises nothing (a relay
    whose broker is away, retrying in the background): ``chanlog run`` shows the reason in
    the consumer's row, where the records' own errors would be, and the runner's lease
    heartbeat writes a new reason as the consumer's last error (cleared once it is gone), so
    that ``chanlog consumers`` shows it in any process (ADR 0048). Called from the
    heartbeat's thread."""

    def failure(self) -> str | None:
        """Why records are waiting now, in words (``None``, or ``""``: they are not)."""
        ...


@runtime_checkable
class BindsToStore(Protocol):
    """A handler that wants the store (to read it) before its first record."""

    def bind(self, store: Any, consumer: str) -> None:
        """Called once, by the runner, before any record is handled."""
        ...


@runtime_checkable
class ClosesHandler(Protocol):
    """A handler holding resources: the runner closes it when it stops."""

    def close(self) -> None:
        """Release files and connections."""
        ...


class HandlerCall:
    """Calls one handler for a runner: awaits what it returns when that is awaitable (on
    an event loop of the runner's own, made on first need), and checks the result.

    Args:
        handler: the handler.
        name: how errors name it.
    """

    def __init__(self, handler: Handler, name: str) -> None:
        self.handler = handler
        self.name = name
        self._replay: Callable[[RecordedEvent], Any] = (
            handler.replay if isinstance(handler, ReplaysBelowPosition) else handler
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __call__(self, record: RecordedEvent, replaying: bool = False) -> Appends:
        """The events to append after handling ``record`` (``[]``: none); ``replaying``:
        a parked record an operator asked to replay (given to a
        :class:`ReplaysBelowPosition` handler's ``replay``).

        Raises:
            InvalidArgument: the handler returned something other than ``None`` or events.
            Exception: whatever the handler raised.
        """
        result = self._replay(record) if replaying else self.handler(record)
        if result is None:  # the common case first: a handler with nothing to append
            return []
        if inspect.isawaitable(result):
            result = self._run(result)
            if result is None:
                return []
        items = items_once(
            result,
            lambda: (
                f"handler {self.name} returned {type(result).__name__}: a handler returns "
                "None or a list of the events to append"
            ),
            single=(Event, Mapping),
        )
        appends: Appends = []
        for item in items:
            if not isinstance(item, Event | Mapping):
                raise InvalidArgument(
                    f"handler {self.name} returned a {type(item).__name__} among the events "
                    "to append: each must be a chanlog Event or a {'type', 'payload'} envelope"
                )
            appends.append(item)
        return appends

    def _run(self, awaitable: Awaitable[Any]) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()

        async def wait() -> Any:
            return await awaitable

        return self._loop.run_until_complete(wait())

    def close(self) -> None:
        """Close the handler (if it :class:`ClosesHandler`) and the event loop, once: the
        runner's ``close`` may be called again (``chanlog run`` closes every runner after
        its thread ended), and a handler's ``close`` need not be idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if isinstance(self.handler, ClosesHandler):
                self.handler.close()
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None


def describe(handler: Callable[..., Any]) -> str:
    """A name for messages: the handler's qualified name, or its repr."""
    return str(getattr(handler, "__qualname__", None) or repr(handler))


class _ObservedCall(HandlerCall):
    """A handler call that reports each try to the consumer's telemetry (ADR 0035)."""

    def __init__(self, handler: Handler, name: str, telemetry: ConsumerTelemetry) -> None:
        super().__init__(handler, name)
        self._telemetry = telemetry

    def __call__(self, record: RecordedEvent, replaying: bool = False) -> Appends:
        with self._telemetry.processing(record):
            return super().__call__(record, replaying)


def handler_call(store: object, handler: Handler, consumer: str, name: str) -> HandlerCall:
    """What the runner of the durable consumer ``consumer`` of ``store`` calls ``handler``
    through: a :class:`HandlerCall` (``name``: how errors name it), which also reports
    each try when the store has telemetry (:func:`chanlog.telemetry.telemetry_of`)."""
    telemetry = telemetry_of(store)
    if telemetry is None:
        return HandlerCall(handler, name)
    return _ObservedCall(handler, name, telemetry.consumer(consumer))
