"""A fake telemetry provider for the tests of :mod:`chanlog.telemetry`: it records every
call, and (:class:`BrokenTelemetry`) raises at the points it is told to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from chanlog.records import RecordedEvent

__all__ = [
    "BrokenTelemetry",
    "FakeConsumer",
    "FakeProvider",
    "FakeRelay",
    "FakeTelemetry",
    "host_with",
]


class FakeConsumer:
    """Records each try of a handler, handled or failed."""

    def __init__(self, calls: list[tuple[Any, ...]], name: str) -> None:
        self.calls = calls
        self.name = name

    @contextmanager
    def processing(self, record: RecordedEvent) -> Iterator[object]:
        try:
            yield self
        except Exception as exc:
            self.calls.append(("failed", self.name, record.offset, type(exc).__name__))
            raise
        self.calls.append(("handled", self.name, record.offset))


class FakeRelay:
    """Reports nothing."""

    def published(self, record: RecordedEvent, subject: str) -> None:
        del record, subject


class FakeTelemetry:
    """Records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _add(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def appended(self, encoded: Any, result: Any, span: Any, commit: Any) -> None:
        assert span[0] <= span[1]
        if commit is not None:
            assert span[0] <= commit[0] <= commit[1] <= span[1]
        self._add("appended", len(encoded), [r.offset for r in result.records], commit is not None)

    def refused(self, rule: str, error: Exception, span: Any) -> None:
        self._add("refused", rule, type(error).__name__)

    def committed(self, span: Any, durable: bool) -> None:
        self._add("committed", durable)

    def reconstructed(self, kind: str, span: Any) -> None:
        self._add("reconstructed", kind)

    def verified(self, records: int, error: Exception | None, span: Any) -> None:
        self._add("verified", records, None if error is None else type(error).__name__)

    def snapshot_taken(self, snapshot: Any, span: Any) -> None:
        self._add("snapshot", snapshot.offset, len(snapshot.data) > 0)

    def consumer(self, name: str) -> FakeConsumer:
        return FakeConsumer(self.calls, name)

    def relay(self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]) -> Any:
        return FakeRelay()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == kind]


class FakeProvider:
    """Offers ``telemetry`` to every store that opens (and remembers which asked)."""

    def __init__(self, telemetry: FakeTelemetry | None) -> None:
        self.telemetry = telemetry
        self.asked: list[Any] = []

    def for_store(self, store: Any) -> FakeTelemetry | None:
        self.asked.append(store)
        return self.telemetry

    def serve_metrics(self, host: str, port: int) -> Callable[[], None]:
        raise NotImplementedError


def host_with(**providers: Any) -> PluginHost:
    """A host without entry points, whose plugin ``fake-telemetry`` registers ``providers``."""

    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Callable[[str, Any], None]) -> None:
            for name, provider in providers.items():
                register(name, provider)

    host = PluginHost(load_entry_points=False)
    host.register(Registers(), "fake-telemetry")
    return host


class BrokenTelemetry(FakeTelemetry):
    """A :class:`FakeTelemetry` that raises ``RuntimeError("telemetry broke at POINT")`` at
    each point named in ``broken`` (a method's name; ``"processing"``: entering a consumer's
    try, ``"processed"``: leaving it, ``"swallow"``: leaving it says the handler's error was
    handled; ``"published"``, ``"received"``: a relay's hand-over, an ingest's append;
    ``"headers"``: a relay's hand-over returns headers that are not text),
    until :attr:`broken` is emptied."""

    def __init__(self, *broken: str) -> None:
        super().__init__()
        self.broken = set(broken)

    def _break(self, point: str) -> None:
        if point in self.broken:
            raise RuntimeError(f"telemetry broke at {point}")

    def appended(self, encoded: Any, result: Any, span: Any, commit: Any) -> None:
        self._break("appended")
        super().appended(encoded, result, span, commit)

    def refused(self, rule: str, error: Exception, span: Any) -> None:
        self._break("refused")
        super().refused(rule, error, span)

    def committed(self, span: Any, durable: bool) -> None:
        self._break("committed")
        super().committed(span, durable)

    def reconstructed(self, kind: str, span: Any) -> None:
        self._break("reconstructed")
        super().reconstructed(kind, span)

    def verified(self, records: int, error: Exception | None, span: Any) -> None:
        self._break("verified")
        super().verified(records, error, span)

    def snapshot_taken(self, snapshot: Any, span: Any) -> None:
        self._break("snapshot_taken")
        super().snapshot_taken(snapshot, span)

    def consumer(self, name: str) -> Any:
        self._break("consumer")
        return _BrokenConsumer(self, name)

    def relay(self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]) -> Any:
        self._break("relay")
        return _BrokenRelay(self)

    @contextmanager
    def received(self, system: str, source: str, carriers: Any) -> Iterator[object]:
        self._break("received")
        yield self
        self._break("received")


class _BrokenConsumer(FakeConsumer):
    def __init__(self, telemetry: BrokenTelemetry, name: str) -> None:
        super().__init__(telemetry.calls, name)
        self.telemetry = telemetry

    def processing(self, record: RecordedEvent) -> Any:
        return _BrokenTry(self, record)


class _BrokenTry:
    def __init__(self, consumer: _BrokenConsumer, record: RecordedEvent) -> None:
        self.consumer = consumer
        self.record = record

    def __enter__(self) -> object:
        self.consumer.telemetry._break("processing")
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        telemetry = self.consumer.telemetry
        outcome = "handled" if error is None else "failed"
        telemetry._add(outcome, self.consumer.name, self.record.offset)
        telemetry._break("processed")
        return "swallow" in telemetry.broken


class _BrokenRelay:
    def __init__(self, telemetry: BrokenTelemetry) -> None:
        self.telemetry = telemetry

    def published(self, record: RecordedEvent, subject: str) -> Mapping[str, str] | None:
        self.telemetry._break("published")
        if "headers" in self.telemetry.broken:  # not a mapping of text to text
            return {"traceparent": 5}  # type: ignore[dict-item]
        return {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
