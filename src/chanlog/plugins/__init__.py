"""The plugin host: hook specifications, the ``hookimpl`` marker and the registries."""

from __future__ import annotations

from chanlog.plugins.builtin_storage import LazyBackendFactory
from chanlog.plugins.hookspecs import hookimpl, hookspec
from chanlog.plugins.host import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    Contribution,
    PluginHost,
    default_host,
    reset_default_host,
)

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Contribution",
    "LazyBackendFactory",
    "PluginHost",
    "default_host",
    "hookimpl",
    "hookspec",
    "reset_default_host",
]
