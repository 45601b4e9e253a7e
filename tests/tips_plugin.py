"""A plugin's event type, ``tip-paid`` (group ``tips``), registered in a plugin host of its
own: a test opens one store with it (the process that has the plugin) and another without
it (a process that does not)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs

import chanlog
from chanlog import fields
from chanlog.plugins.host import PluginHost

__all__ = ["TipPaid", "host_with_tips"]


@attrs.define(frozen=True, slots=True, kw_only=True)
class TipPaid(chanlog.Event):
    """An event type of a plugin that the consuming process does not have."""

    event_type: ClassVar[str] = "tip-paid"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)
    group: ClassVar[str] = "tips"

    channel_id: str = attrs.field(validator=fields.bytes32)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)


class _Tips:
    @chanlog.hookimpl
    def chanlog_register_event_types(self, register: Callable[[type], None]) -> None:
        register(TipPaid)


def host_with_tips() -> PluginHost:
    """A plugin host with the built-ins and the tips plugin."""
    host = PluginHost()
    host.register(_Tips(), "tips")
    return host
