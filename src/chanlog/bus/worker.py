"""The worker behind ``chanlog run``: every durable consumer and every ingest a
configuration declares, each on a thread of its own, stopped together.

Stopping (:meth:`Worker.stop`, what SIGTERM and Ctrl-C do) lets each consumer finish the
record in hand, commit its position and give its lease up; each ingest finishes the message
in hand. A consumer whose lease another runner holds waits for it (it takes over within the
lease's expiry once that runner dies).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from chanlog.backends.sqlite_schema import log_files
from chanlog.bus.facade import Bus
from chanlog.bus.handlers import Handler
from chanlog.bus.ingest import IngestSource
from chanlog.bus.runner import ConsumerRunner
from chanlog.bus.settings import BusSettings, ConsumerSettings, IngestSettings
from chanlog.bus.source import BusStore
from chanlog.bus.spec import beyond_the_end
from chanlog.errors import ChanlogError, ConfigError
from chanlog.factories import construct
from chanlog.plugins.contracts import check_built

__all__ = ["Worker", "WorkerRow", "check_something_to_run"]

logger = logging.getLogger("chanlog.worker")


@attrs.frozen
class WorkerRow:
    """One line of ``chanlog run``'s table.

    Attributes:
        kind: ``"consumer"`` or ``"ingest"``.
        name: the table's name.
        state: ``"waiting"`` (for a lease), ``"running"``, ``"retrying"`` (its storage is
            failing: it waits out a backoff before it tries again), ``"stopped"`` or
            ``"failed"``.
        position: a consumer's committed position (``None`` for an ingest).
        lag: records not yet handled (a consumer), or messages not yet pulled (an ingest,
            when its source knows).
        handled: records this process handled since it started (appended, for an
            ingest): ``chanlog run``'s "handled (this run)".
        parked: records parked.
        last_error: the latest failure, as text.
        holder: while a consumer is ``"waiting"``, who holds its lease (the runner that
            keeps this one waiting: ``host:pid:...``), when the backend says; else ``None``.
        handled_total: a consumer's records handled in all, by every runner since it was
            created, as the backend keeps it (what ``chanlog consumers`` shows); ``None``
            for an ingest, or when the backend could not be read.
    """

    kind: str
    name: str
    state: str
    position: int | None
    lag: int | None
    handled: int
    parked: int
    last_error: str | None
    holder: str | None = None
    handled_total: int | None = None


class _Job:
    """One thread of the worker and what it runs."""

    def __init__(
        self,
        kind: str,
        name: str,
        target: Callable[[threading.Event], None],
        stop: threading.Event,
    ) -> None:
        self.kind = kind
        self.name = name
        self.state = "waiting" if kind == "consumer" else "running"
        self.exception: Exception | None = None
        self._target = target
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name=f"chanlog-{kind}-{name}", daemon=True)

    @property
    def error(self) -> str | None:
        """What the thread died of, as one line (``None``: it did not)."""
        exc = self.exception
        return None if exc is None else f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        try:
            self._target(self._stop)
            self.state = "stopped"
        except Exception as exc:  # a worker thread's death is reported, not swallowed
            self.exception = exc  # before the state: who sees "failed" finds the error
            self.state = "failed"
            if isinstance(exc, ChanlogError):  # a refusal that says why: no traceback
                logger.error("%s %s failed: %s", self.kind, self.name, self.error)
            else:
                logger.exception("%s %s failed", self.kind, self.name)


class Worker:
    """Runs what ``settings`` declares against ``store``.

    Args:
        store: the store (its backend keeps the consumers' positions).
        bus: the store's bus.
        settings: the configuration's bus tables.
        handlers: handler name → factory (the plugin host's registry).
        ingest_sources: ingest source name → factory.
        only: run only these names (``None``: all).
    """

    def __init__(
        self,
        store: BusStore,
        bus: Bus,
        settings: BusSettings,
        handlers: Mapping[str, Callable[..., Handler]],
        ingest_sources: Mapping[str, Callable[..., IngestSource]],
        only: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self._stop = threading.Event()
        self._asked_to_stop = False
        self.runners: dict[str, ConsumerRunner] = {}
        self.ingests: dict[str, IngestSource] = {}
        self._jobs: list[_Job] = []
        self._closers: list[Callable[[], None]] = []
        self._source = settings.source
        check_something_to_run(settings, only)
        chosen = [c for c in settings.consumers if only is None or c.name in only]
        # Before any handler is built (a handler's factory creates its files).
        _check_starts(store, bus, chosen, settings.source)
        _check_handler_files(store, chosen, handlers, settings.source)
        try:
            for consumer in chosen:
                self._add_consumer(consumer, handlers)
            for ingest in settings.ingest:
                if only is None or ingest.name in only:
                    self._add_ingest(ingest, ingest_sources)
        except BaseException:
            self.close()
            raise

    def _add_consumer(
        self, consumer: ConsumerSettings, handlers: Mapping[str, Callable[..., Handler]]
    ) -> None:
        handler = construct(
            handlers[consumer.handler],
            consumer.handler_options,
            table=f"consumers.{consumer.name}",
            source=self._source,
            host=self.store.plugins,
            kind="handlers",
            name=consumer.handler,
        )
        what = self.store.plugins.describe("handlers", consumer.handler)
        check_built("handlers", f"[consumers.{consumer.name}] {what}", handler)
        runner = self.bus.consumer_of(consumer.spec, handler)
        self.runners[consumer.name] = runner
        self._jobs.append(_Job("consumer", consumer.name, runner.run, self._stop))

    def _add_ingest(
        self, ingest: IngestSettings, sources: Mapping[str, Callable[..., IngestSource]]
    ) -> None:
        options = {"name": ingest.name, **ingest.options}
        source = construct(
            sources[ingest.source],
            options,
            table=f"ingest.{ingest.name}",
            source=self._source,
            host=self.store.plugins,
            kind="ingest_sources",
            name=ingest.source,
        )
        self.ingests[ingest.name] = source
        store = self.store
        self._jobs.append(
            _Job("ingest", ingest.name, lambda stop: source.run(store, stop), self._stop)
        )

    def start(self) -> None:
        """Start every thread."""
        for job in self._jobs:
            job.thread.start()

    def stop(self) -> None:
        """Ask every thread to finish what it holds and stop (returns at once); a handler
        blocked outside the log is interrupted (:meth:`ConsumerRunner.interrupt`)."""
        self._asked_to_stop = True
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        self._interrupt()

    def _interrupt(self) -> None:
        """Interrupt every handler blocked outside the log (:meth:`ConsumerRunner.interrupt`)."""
        for runner in self.runners.values():
            runner.interrupt()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (not by :meth:`close`, which stops what is left
        of threads that ended on their own: a worker whose threads all failed was not asked
        to stop)."""
        return self._asked_to_stop

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every thread to end; return whether they all did. Once stopping, the
        handlers are interrupted again first: an interrupt that came between two records,
        before the handler blocked on the next (a relay's window full while NATS is away),
        found nothing to interrupt, and ``chanlog run`` waits here until every thread ended."""
        if self._stop.is_set():
            self._interrupt()
        for job in self._jobs:
            job.thread.join(timeout)
        return not any(job.thread.is_alive() for job in self._jobs)

    def failed(self) -> list[str]:
        """``"kind name: error"`` of every thread that died."""
        return [
            f"{job.kind} {job.name}: {job.error}" for job in self._jobs if job.state == "failed"
        ]

    def failures(self) -> list[Exception]:
        """What each thread that died raised, in the order of :meth:`failed`."""
        return [job.exception for job in self._jobs if job.exception is not None]

    def rows(self) -> list[WorkerRow]:
        """Where every consumer and ingest stands now."""
        rows = []
        admin = self.bus.consumers
        for job in self._jobs:
            if job.kind == "consumer":
                runner = self.runners[job.name]
                state = "running" if job.state == "waiting" and runner.started else job.state
                # Alive (a consumer's job stays "waiting" until its thread ends) and failing,
                # whether it failed before it held the lease or after.
                retrying = runner.stats.retrying and job.state == "waiting"
                holder: str | None = None
                total: int | None = None
                try:
                    info = admin.info(job.name)
                    total = info.state.handled
                    lag: int | None = info.lag
                    parked = info.state.parked
                    position: int | None = info.state.position
                    error = info.state.last_error
                    if state == "waiting" and info.running:
                        holder = info.state.lease_holder
                except ChanlogError:
                    lag, parked, position, error = None, 0, None, runner.stats.last_error
                if retrying:  # the failure is the runner's own: the storage could not keep it
                    state, error, holder = "retrying", runner.stats.last_error, None
                else:  # in this process before the lease heartbeat writes it (ADR 0058)
                    error = runner.failure() or error
                rows.append(
                    WorkerRow(
                        "consumer",
                        job.name,
                        state,
                        position,
                        lag,
                        runner.stats.handled,
                        parked,
                        job.error or error,
                        holder,
                        total,
                    )
                )
            else:
                stats = self.ingests[job.name].stats()
                rows.append(
                    WorkerRow(
                        "ingest",
                        job.name,
                        "retrying"
                        if stats.get("retrying") and job.state == "running"
                        else job.state,
                        None,
                        stats.get("lag"),
                        int(stats.get("appended", 0)),
                        int(stats.get("parked", 0)),
                        job.error or stats.get("last_error"),
                    )
                )
        return rows

    def close(self) -> None:
        """Stop, wait, and close what was built."""
        self._halt()
        for job in self._jobs:
            if job.thread.is_alive():
                job.thread.join()
        for runner in self.runners.values():
            runner.close()


def check_something_to_run(settings: BusSettings, only: frozenset[str] | None = None) -> None:
    """Refuse settings that declare no consumer or ingest (of ``only``, when given), before
    the log is opened: ``chanlog run`` would otherwise create a log to run nothing on.

    Raises:
        ConfigError: naming where the settings came from.
    """
    names = {c.name for c in settings.consumers} | {i.name for i in settings.ingest}
    if names & only if only is not None else names:
        return
    raise ConfigError(
        f"{_at(settings.source)}nothing to run: the configuration declares no "
        "[consumers.NAME] or [ingest.NAME] table"
        + ("" if only is None else f" named {sorted(only)}"),
        source=settings.source,
        key="consumers",
    )


def _at(source: str | None) -> str:
    """``"SOURCE: "``, the start of a configuration error's message, when it is known."""
    return "" if source is None else f"{source}: "


def _check_starts(
    store: BusStore, bus: Bus, consumers: list[ConsumerSettings], source: str | None
) -> None:
    """A new consumer whose ``start`` lies beyond the end of the log is a configuration
    error, found before anything is built or written (an existing one resumes from its
    position: its ``start`` no longer matters)."""
    offsets = [c for c in consumers if isinstance(c.spec.start, int)]
    if not offsets:
        return
    length = len(store)
    existing = {state.name for state in bus.consumers.states()}
    for consumer in offsets:
        start = consumer.spec.start
        assert isinstance(start, int)
        if start > length and consumer.name not in existing:
            raise ConfigError(
                f"{_at(source)}consumers.{consumer.name}.start = {start} is beyond the end of "
                f"the log ({length} records); {beyond_the_end(length)}",
                source=source,
                key=f"consumers.{consumer.name}.start",
            )


def _check_handler_files(
    store: BusStore,
    consumers: list[ConsumerSettings],
    handlers: Mapping[str, Callable[..., Handler]],
    source: str | None,
) -> None:
    """A handler file that is one of the log's own (its ``path`` copied from ``[backend]``)
    is a configuration error, found before the handler writes to it."""
    log = getattr(store.backend, "path", None)
    if not isinstance(log, str | os.PathLike):
        return
    own = log_files(log)
    for consumer in consumers:
        for option in getattr(handlers.get(consumer.handler), "path_options", ()):
            value = consumer.handler_options.get(option)
            if isinstance(value, str) and Path(os.path.realpath(value)) in own:
                key = f"consumers.{consumer.name}.{option}"
                raise ConfigError(
                    f"{_at(source)}{key} = {value!r} is a file of the log itself ({log}): give "
                    f"the {consumer.handler} handler a file of its own",
                    source=source,
                    key=key,
                )
