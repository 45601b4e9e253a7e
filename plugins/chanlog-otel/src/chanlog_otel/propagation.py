"""Traces continued across processes through a broker's message headers (ADR 0062): a
relay's ``publish`` span goes into the headers of the record's message, by the process's
text-map propagator (W3C ``traceparent`` and ``tracestate`` unless configured otherwise),
and an ingest that appends such messages does so in a ``process`` span that continues them:
the child of the one message's span, or linked to each message's span for a batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, get_current_span, set_span_in_context

from chanlog_otel import names
from chanlog_otel.spans import CurrentSpan

__all__ = ["Received", "carrier_of"]


def carrier_of(span: Span) -> dict[str, str]:
    """The headers that carry ``span``'s context to another process (empty when the
    propagator carries nothing, as with a span that is not recorded nor sampled)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=set_span_in_context(span))
    return carrier


def _sent_from(carrier: Mapping[str, str] | None) -> Context | None:
    """The context a message with these headers was sent in (``None``: it carries no
    valid trace). Headers come from another process: a carrier that is not a mapping, and
    a header that is not text, are ignored (the propagators raise on them, ADR 0073)."""
    if not carrier or not isinstance(carrier, Mapping):
        return None
    text = {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}
    if not text:
        return None
    context = propagate.extract(text)
    return context if get_current_span(context).get_span_context().is_valid else None


class Received:
    """Around the append of messages received from another process's relay: a ``process``
    span, current while they are appended (so the append's span is its child)."""

    __slots__ = ("_attributes", "_carriers", "_current", "_tracer")

    def __init__(
        self,
        tracer: Any,
        system: str,
        source: str,
        carriers: Sequence[Mapping[str, str] | None],
    ) -> None:
        self._tracer = tracer
        self._carriers = carriers
        self._attributes: dict[str, Any] = {
            names.SYSTEM: system,
            names.OPERATION_NAME: "process",
            names.OPERATION_TYPE: "process",
            names.DESTINATION: source,
        }
        if len(carriers) != 1:
            self._attributes[names.BATCH_COUNT] = len(carriers)
        self._current: CurrentSpan | None = None

    def __enter__(self) -> object:
        senders = [context for context in map(_sent_from, self._carriers) if context is not None]
        parent = None
        links = None
        if len(self._carriers) == 1 and senders:  # one message: its trace goes on
            parent = senders[0]
        elif senders:  # a batch: one link per message that carried a trace
            links = [Link(get_current_span(context).get_span_context()) for context in senders]
        span = self._tracer.start_span(
            f"process {self._attributes[names.DESTINATION]}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=self._attributes,
            links=links,
        )
        self._current = CurrentSpan(span)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any
    ) -> None:
        if self._current is not None:
            self._current.end(kind, error, traceback)
