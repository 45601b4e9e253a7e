"""The plugin module the ``chanlog`` entry point names: registers the ``nats-relay``
handler, the ``nats`` broker and the ``nats`` ingest source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog_nats.broker import NatsBroker
from chanlog_nats.ingest import NatsIngest
from chanlog_nats.relay import NatsRelay

__all__ = [
    "chanlog_register_brokers",
    "chanlog_register_handlers",
    "chanlog_register_ingest_sources",
]


@hookimpl
def chanlog_register_handlers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`~chanlog_nats.NatsRelay` as handler ``nats-relay``."""
    register("nats-relay", NatsRelay)


@hookimpl
def chanlog_register_brokers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`~chanlog_nats.NatsBroker` as broker ``nats``."""
    register("nats", NatsBroker)


@hookimpl
def chanlog_register_ingest_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register :class:`~chanlog_nats.NatsIngest` as ingest source ``nats``."""
    register("nats", NatsIngest)
