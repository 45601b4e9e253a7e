"""Built-in plugin: the ``embedded`` broker and the built-in durable-consumer handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl


@hookimpl
def chanlog_register_brokers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the in-process broker."""
    from chanlog.bus.brokers import EmbeddedBroker

    register(EmbeddedBroker.name, EmbeddedBroker)


@hookimpl
def chanlog_register_handlers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the audit tap and the channel read model (imported when first built, so
    ``import chanlog`` does not load sqlite3)."""
    from chanlog.bus.builtin_handlers import channel_read_model, jsonl_tap

    register("jsonl", jsonl_tap)
    register("channel-read-model", channel_read_model)
