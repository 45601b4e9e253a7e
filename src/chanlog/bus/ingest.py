"""Ingest: an external durable stream feeding a store (DESIGN section 10).

An ingest source pulls records from elsewhere (a JetStream durable consumer, say), appends
each to the store idempotently by event id, acknowledges after the commit, and parks what it
must not append (a body whose event id does not match, an event the store's rules refuse)
rather than dropping it silently. Sources are registered by name with
``chanlog_register_ingest_sources(register)``: ``register(name, factory)``, where
``factory(**options)`` builds an :class:`IngestSource` from the options of an
``[ingest.NAME]`` table (``source = "<name>"``) or of ``chanlog ingest <name> --key value``.
``chanlog run`` runs every ``[ingest.NAME]`` next to the consumers.

Parked messages are kept by the store's backend as the parked records of the consumer
named ``ingest:<NAME>``, so ``chanlog consumers parked ingest:<NAME>`` lists them
(:func:`ingest_consumer_name`).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from chanlog.bus.source import BusStore

__all__ = ["INGEST_PREFIX", "IngestSource", "IngestSourceFactory", "ingest_consumer_name"]

INGEST_PREFIX = "ingest:"
"""The prefix of the consumer name under which an ingest keeps its parked messages."""


def ingest_consumer_name(name: str) -> str:
    """The consumer name under which the ingest ``name`` parks messages."""
    return INGEST_PREFIX + name


@runtime_checkable
class IngestSource(Protocol):
    """Feeds a store from an external durable stream until told to stop."""

    name: str
    """The ingest's name (its ``[ingest.NAME]`` table, or the source name on the CLI)."""

    def run(self, store: BusStore, stop: threading.Event) -> None:
        """Pull, append idempotently, acknowledge after the commit, park what must not be
        appended; return once ``stop`` is set (finishing the message in hand)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Figures for ``chanlog run``'s table: at least ``appended``, ``duplicates``,
        ``parked`` and ``lag`` (messages not yet pulled, if the source knows); optionally
        ``last_error`` and ``retrying`` (true while the store fails and the source waits
        out a backoff before it tries again)."""
        ...


class IngestSourceFactory(Protocol):
    """What ``chanlog_register_ingest_sources`` registers: ``factory(name=..., **options)``."""

    def __call__(self, *, name: str, **options: Any) -> IngestSource: ...
