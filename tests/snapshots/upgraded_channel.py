"""A plugin host whose channel projection is at schema version 2: a node after a plugin
upgrade, whose snapshots of version 1 it must ignore (DESIGN section 5)."""

from __future__ import annotations

from typing import Any

from chanlog.plugins import builtin_projections
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import BUILTIN_PLUGINS, PluginHost
from chanlog.projections.channel import ChannelProjection


class _ChannelV2(ChannelProjection):
    schema_version = 2


class _Upgraded:
    """The built-in projections, with the channel projection at schema version 2."""

    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        factories: dict[str, Any] = {}
        builtin_projections.chanlog_register_projections(factories.__setitem__)
        factories["channel"] = _ChannelV2
        for name, factory in factories.items():
            register(name, factory)


def channel_host(upgraded: bool) -> PluginHost:
    """The built-in plugins (no entry points), the channel projection at version 2 when
    ``upgraded``."""
    if not upgraded:
        return PluginHost(load_entry_points=False)
    builtins = [name for name in BUILTIN_PLUGINS if name != builtin_projections.__name__]
    host = PluginHost(load_entry_points=False, builtins=builtins)
    host.register(_Upgraded(), name="upgraded")
    return host
