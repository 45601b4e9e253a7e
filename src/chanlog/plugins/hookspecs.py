"""Every hook chanlog calls (pluggy project name ``chanlog``).

A plugin is any object or module with functions marked ``@chanlog.hookimpl`` whose names
match these specifications. Third-party packages expose one through an entry point in the
group ``chanlog``::

    [project.entry-points.chanlog]
    my_plugin = "my_package.plugin"

The registration hooks take a ``register`` callback instead of returning values, so the host
knows which plugin registered which name and can refuse a duplicate naming both plugins. The
built-in event types, projections, snapshot policies, serializers, backends, brokers and
handlers are registered through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from chanlog.events.base import Event

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("chanlog")
hookimpl = pluggy.HookimplMarker("chanlog")


@hookspec
def chanlog_register_event_types(register: Callable[[type[Event]], None]) -> None:
    """Register event classes.

    Call ``register(cls)`` once per class. ``cls`` is a frozen, slotted, kw-only attrs
    subclass of :class:`chanlog.Event` with a unique ``event_type`` wire name and its
    ``stream_fields``. Its events are then validated, encoded, stored and read like built-ins.
    """


@hookspec
def chanlog_register_projections(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register projections.

    Call ``register(name, factory)``; ``factory()`` returns a new object implementing
    :class:`chanlog.projections.Projection`. Built-ins: ``objective``, ``channel``, ``messages``.
    """


@hookspec
def chanlog_register_snapshot_policies(
    register: Callable[[str, Callable[..., Any]], None],
) -> None:
    """Register snapshot policies.

    Call ``register(name, factory)``; ``factory(**options)`` returns an object implementing
    :class:`chanlog.snapshots.SnapshotPolicy`. Built-ins: ``every-n-events``, ``never``.
    """


@hookspec
def chanlog_register_serializers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register payload serializers.

    Call ``register(name, factory)``; ``factory()`` returns a
    :class:`chanlog.serializers.Serializer`. Built-in: ``json``. Event ids stay defined on
    canonical JSON whatever the serializer.
    """


@hookspec
def chanlog_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register storage backends.

    Call ``register(name, factory)``; ``factory(**options)`` returns a
    :class:`chanlog.backends.Backend`, configured from the ``[backend]`` table of chanlog.toml.
    Built-ins: ``memory``, ``sqlite``. A backend should pass :mod:`chanlog.testing`.
    """


@hookspec
def chanlog_register_brokers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register bus brokers.

    Call ``register(name, factory)``; ``factory(context=..., **options)`` returns a
    :class:`chanlog.bus.Broker`, given a :class:`chanlog.bus.BusContext` and the further
    keys of ``[bus]`` in chanlog.toml. Built-in: ``embedded`` (in-process, the default).
    """


@hookspec
def chanlog_register_handlers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register durable-consumer handlers.

    Call ``register(name, factory)``; ``factory(**options)`` returns a handler (see
    :mod:`chanlog.bus.handlers`), built from the handler options of a ``[consumers.NAME]``
    table whose ``handler`` names it. A factory may list ``path_options``: option names
    holding file paths, resolved against the configuration file's directory, and, when it
    takes ``**options``, ``accepted_options`` and ``required_options``, checked when the
    configuration is read (as brokers' and ingest sources' factories may). Built-ins:
    ``jsonl`` (an audit tap writing records as JSON lines) and ``channel-read-model``
    (the latest supported state per channel in a SQLite table, exactly once).
    """


@hookspec
def chanlog_register_ingest_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ingest sources (external durable streams that feed a store).

    Call ``register(name, factory)``; ``factory(name=..., **options)`` returns a
    :class:`chanlog.bus.ingest.IngestSource`, built from an ``[ingest.NAME]`` table (whose
    ``source`` names it) or from ``chanlog ingest <name> --key value ...``. No built-in:
    ``plugins/chanlog-nats`` registers ``nats``.
    """


@hookspec
def chanlog_register_telemetry(register: Callable[[str, Any], None]) -> None:
    """Register telemetry providers (ADR 0035).

    Call ``register(name, provider)``; ``provider`` is a
    :class:`chanlog.telemetry.TelemetryProvider`. Every store that opens asks the providers,
    by name, for the telemetry to install (the first one offered is); ``chanlog run
    --metrics`` asks the first one to serve metrics. No built-in: ``plugins/chanlog-otel``
    registers ``otel`` (OpenTelemetry metrics and traces, a Prometheus endpoint).

    Telemetry observes and never decides (ADR 0073): an exception raised by a provider's
    ``for_store`` (the store opens without it) or by any point of the telemetry it offers
    (``appended``, ``refused``, ``committed``, ``processing``...) is caught, logged once on
    ``chanlog.telemetry`` naming the provider and this plugin (again each minute it goes
    on, and when it stops), and changes nothing the store, a consumer, a relay or an ingest
    does. A context manager's ``__exit__`` cannot swallow the work's error. Reporting is
    synchronous: a telemetry must not block (``committed`` runs under the store's lock).
    This hook itself raising is a :class:`~chanlog.errors.PluginError` (ADR 0061).
    """


@hookspec
def chanlog_store_opened(store: Any) -> None:
    """Called once a store (a :class:`chanlog.EventStore`) is open and its projections are
    up to date. (Typed ``Any`` here so the hook specifications import nothing of the
    store: the store imports them.)"""


@hookspec
def chanlog_store_closing(store: Any) -> None:
    """Called when a store starts closing, before its backend is released."""
