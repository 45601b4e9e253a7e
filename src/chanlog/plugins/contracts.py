"""What each kind of registered part must implement, checked where chanlog builds one.

A plugin registers factories; what a factory returns is only known when chanlog calls it.
:func:`check_built` compares it with the protocol of its kind, so a factory returning the
wrong thing is a :class:`~chanlog.errors.PluginError` naming the part, its plugin and each
missing member, instead of an ``AttributeError`` somewhere inside the store later (or, for
a handler, every record parked).
"""

from __future__ import annotations

import importlib
from typing import Any

from chanlog.errors import PluginError

__all__ = ["PROTOCOLS", "check_built", "missing_members", "protocol_members"]

PROTOCOLS: dict[str, str] = {
    "projections": "chanlog.projections.base:Projection",
    "snapshot_policies": "chanlog.snapshots.policies:SnapshotPolicy",
    "serializers": "chanlog.serializers:Serializer",
    "backends": "chanlog.backends.base:Backend",
    "brokers": "chanlog.bus.brokers:Broker",
    "ingest_sources": "chanlog.bus.ingest:IngestSource",
}
"""Registry kind → the protocol what its factories build implements (``module:Class``).
A handler is any callable (:class:`chanlog.bus.Handler`)."""

_members: dict[str, tuple[str, ...]] = {}


def protocol_members(kind: str) -> tuple[str, ...]:
    """The attributes and methods the protocol of ``kind`` declares (``()``: a kind with
    no protocol of members, such as handlers)."""
    found = _members.get(kind)
    if found is None:
        target = PROTOCOLS.get(kind)
        if target is None:
            return ()
        module, _, name = target.partition(":")
        protocol = getattr(importlib.import_module(module), name)
        declared = [*getattr(protocol, "__annotations__", {})]
        declared += [
            member
            for member, value in vars(protocol).items()
            if callable(value) and (not member.startswith("_") or member == "__len__")
        ]
        found = _members[kind] = tuple(dict.fromkeys(declared))
    return found


def missing_members(kind: str, value: Any) -> list[str]:
    """The members of the protocol of ``kind`` that ``value`` lacks (``["__call__"]``: a
    handler that is not callable)."""
    if kind == "handlers":
        return [] if callable(value) else ["__call__"]
    present = set(dir(value))
    return [member for member in protocol_members(kind) if member not in present]


def check_built(kind: str, what: str, value: Any, *, plugin: str | None = None) -> Any:
    """``value``, which the factory of ``what`` (``"serializer 'zjson'"``, naming its
    plugin) built, once it implements the protocol of ``kind``.

    Raises:
        PluginError: it does not; the error names each missing member.
    """
    missing = missing_members(kind, value)
    if not missing:
        return value
    built = type(value).__qualname__
    if missing == ["__call__"]:
        problem = f"its factory returned a {built} value, which is not callable (a handler is)"
    else:
        protocol = PROTOCOLS[kind].replace(":", ".")
        problem = (
            f"its factory returned a {built} value, which lacks {', '.join(missing)} "
            f"(see the protocol {protocol})"
        )
    raise PluginError(f"{what}: {problem}", plugin=plugin)
