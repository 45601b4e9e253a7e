"""A span current while some work runs, ended when it ends: shared by the ``process``
spans of a durable consumer and of an ingest, which are context managers of their own
(their metrics and their parents differ) around the same span handling."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, Status, StatusCode, use_span

from chanlog_otel import names

__all__ = ["CurrentSpan"]


class CurrentSpan:
    """Makes ``span`` current until :meth:`end`, which records the work's failure on it
    (once: the scope itself records nothing, or an error would be recorded twice) and
    ends it."""

    __slots__ = ("_scope", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._scope = use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )
        self._scope.__enter__()

    def end(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any
    ) -> None:
        """Leave the span's scope and end it, marked failed by ``error`` if any."""
        span = self.span
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.set_attribute(names.ERROR_TYPE, type(error).__name__)
        self._scope.__exit__(kind, error, traceback)
        span.end()
