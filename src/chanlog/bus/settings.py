"""The bus part of a configuration: ``[bus]``, ``[consumers.NAME]`` and ``[ingest.NAME]``
(read by :func:`chanlog.config.load_config`; ADR 0026)::

    [bus]
    broker = "embedded"          # any registered broker; further keys go to its factory
    prefix = "node-a"            # the first token(s) of this node's subjects

    [consumers.audit]
    handler = "jsonl"            # any registered handler
    subjects = ["node-a.channel.>", "node-a.chain.>"]
    start = "earliest"           # "latest", or an offset
    max_deliver = 5
    backoff = [0.1, 0.5, 2.0]    # seconds before each retry
    commit_every = 1000          # records between position commits...
    commit_interval_ms = 200     # ...or this long, whichever comes first
    lease_ttl = 15               # seconds
    path = "audit.jsonl"         # further keys go to the handler's factory

    [ingest.from-node-a]
    source = "nats"              # any registered ingest source; further keys go to it
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from chanlog.bus.brokers import DEFAULT_BROKER
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.subjects import DEFAULT_PREFIX, check_prefix
from chanlog.errors import ConfigError, InvalidArgument
from chanlog.factories import misspelling_hint, option_problem
from chanlog.plugins.host import PluginHost

__all__ = [
    "BusSettings",
    "ConsumerSettings",
    "IngestSettings",
    "read_bus_settings",
]

_SPEC_KEYS = {
    "subjects": "subjects",
    "start": "start",
    "max_deliver": "max_deliver",
    "backoff": "backoff",
    "commit_every": "commit_every",
    "lease_ttl": "lease_ttl",
    "batch_size": "batch_size",
}


@attrs.frozen
class ConsumerSettings:
    """One ``[consumers.NAME]`` table, validated.

    Attributes:
        spec: the consumer's definition.
        handler: the registered handler name.
        handler_options: keyword options for the handler's factory (paths resolved).
    """

    spec: ConsumerSpec
    handler: str
    handler_options: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.spec.name


@attrs.frozen
class IngestSettings:
    """One ``[ingest.NAME]`` table, validated.

    Attributes:
        name: the table's name.
        source: the registered ingest source.
        options: keyword options for its factory.
    """

    name: str
    source: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class BusSettings:
    """``[bus]``, the consumers and the ingests of a configuration.

    Attributes:
        broker: the registered broker name.
        prefix: the node's subject prefix.
        broker_options: keyword options for the broker's factory.
        consumers: the ``[consumers.NAME]`` tables, by name.
        ingest: the ``[ingest.NAME]`` tables, by name.
        source: where the settings came from (a file, ``<dict>``), for the errors of the
            handlers and ingest sources they build.
    """

    broker: str = DEFAULT_BROKER
    prefix: str = DEFAULT_PREFIX
    broker_options: Mapping[str, Any] = attrs.field(factory=dict)
    consumers: tuple[ConsumerSettings, ...] = ()
    ingest: tuple[IngestSettings, ...] = ()
    source: str | None = None


def _fail(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}", source=source, key=key)


def _table(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(source, key, f"must be a table, got {value!r}")
    return dict(value)


def _registered(
    value: Any,
    key: str,
    source: str,
    registry: Mapping[str, Any],
    what: str,
    table: Mapping[str, Any],
) -> str:
    """``value``, the name at ``key``, if ``registry`` has it; ``table``: the rest of the
    table it was taken from, whose keys a missing one is most often misspelled among."""
    if not isinstance(value, str) or value not in registry:
        installed = ", ".join(sorted(registry)) or "none installed"
        if value is None:
            hint = misspelling_hint(table, key.rpartition(".")[2])
            raise _fail(source, key, f"is required (allowed: {installed}){hint}")
        raise _fail(source, key, f"no {what} named {value!r} (allowed: {installed})")
    return value


def read_bus_settings(
    raw: Mapping[str, Any], source: str, host: PluginHost, base: Path | None
) -> BusSettings:
    """Validate the bus tables of ``raw`` (a whole configuration).

    Raises:
        ConfigError: naming the source, the key and what is wrong or allowed.
    """
    bus = _table(raw, "bus", source)
    broker = _registered(
        bus.pop("broker", DEFAULT_BROKER), "bus.broker", source, host.brokers, "broker", bus
    )
    prefix = bus.pop("prefix", DEFAULT_PREFIX)
    # Only a broker plugin takes further keys: a typo, which every command but `chanlog run`
    # (the only one to build the broker) would otherwise ignore, is refused here.
    if broker == DEFAULT_BROKER and bus:
        key = sorted(bus)[0]
        raise _fail(source, f"bus.{key}", "unknown key (allowed: broker, prefix)")
    _check_declared(
        host.brokers[broker], bus, source, "bus", f"{broker} broker", ("broker", "prefix")
    )
    try:
        check_prefix(prefix)
    except InvalidArgument as exc:
        raise _fail(source, "bus.prefix", str(exc)) from None
    consumers = tuple(
        _consumer(name, table, source, host, base)
        for name, table in sorted(_table(raw, "consumers", source).items())
    )
    _check_files_of_their_own(consumers, source, host)
    ingest = tuple(
        _ingest(name, table, source, host)
        for name, table in sorted(_table(raw, "ingest", source).items())
    )
    return BusSettings(broker, prefix, bus, consumers, ingest, source)


def _consumer(
    name: str, table: Any, source: str, host: PluginHost, base: Path | None
) -> ConsumerSettings:
    where = f"consumers.{name}"
    if not isinstance(table, Mapping):
        raise _fail(source, where, f"must be a table, got {table!r}")
    options = dict(table)
    handler = _registered(
        options.pop("handler", None),
        f"{where}.handler",
        source,
        host.handlers,
        "handler",
        options,
    )
    settings: dict[str, Any] = {}
    for key, field in _SPEC_KEYS.items():
        if key in options:
            settings[field] = options.pop(key)
    if "commit_interval_ms" in options:
        interval = options.pop("commit_interval_ms")
        if type(interval) is not int or interval < 1:
            raise _fail(
                source, f"{where}.commit_interval_ms", f"must be an int >= 1, got {interval!r}"
            )
        settings["commit_interval"] = interval / 1000
    try:
        spec = ConsumerSpec(name, **settings)
    except InvalidArgument as exc:
        raise _fail(source, _key_of(where, exc), str(exc)) from None
    factory = host.handlers[handler]
    _check_declared(factory, options, source, where, f"{handler} handler", _CONSUMER_KEYS)
    _resolve_paths(factory, options, base)
    return ConsumerSettings(spec, handler, options)


_CONSUMER_KEYS = ("handler", *_SPEC_KEYS, "commit_interval_ms")

_GIVEN = ("context", "name")
"""Keywords chanlog itself passes a factory (a broker's bus context, an ingest's name),
never options of a table."""


def _check_declared(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    source: str,
    where: str,
    what: str,
    own: tuple[str, ...],
) -> None:
    """Refuse a key the plugin's factory does not take and a missing one it needs, when
    it says which (:func:`~chanlog.factories.accepted_options`), before anything is
    opened: every command reads the configuration, and a refused ``chanlog run`` creates
    no log."""
    problem = option_problem(factory, options, _GIVEN)
    if problem is None:
        return
    kind, key, takes = problem
    if kind == "unknown":
        raise _fail(
            source,
            f"{where}.{key}",
            f"unknown key of the {what} (allowed: {', '.join(sorted(takes)) or 'none'}; "
            f"and {', '.join(own)})",
        )
    raise _fail(source, f"{where}.{key}", f"is required by the {what}")


def _key_of(where: str, exc: InvalidArgument) -> str:
    """The setting an error of :class:`ConsumerSpec` is about (its message starts with
    the field's name, or names a pattern)."""
    text = str(exc)
    for key, field in (*_SPEC_KEYS.items(), ("commit_interval_ms", "commit_interval")):
        if text.startswith(field):
            return f"{where}.{key}"
    if "pattern" in text or "subjects" in text:
        return f"{where}.subjects"
    if "start" in text:
        return f"{where}.start"
    return where


def _resolve_paths(factory: Callable[..., Any], options: dict[str, Any], base: Path | None) -> None:
    """Options the factory names in ``path_options`` are relative to the config file."""
    names = getattr(factory, "path_options", ())
    if base is None or not isinstance(names, tuple):
        return
    for option in names:
        value = options.get(option)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            options[option] = str(base / value)


def _check_files_of_their_own(
    consumers: tuple[ConsumerSettings, ...], source: str, host: PluginHost
) -> None:
    """Refuse two consumers whose handlers name one file (its ``path_options``, resolved):
    each would write every record into it, and take the other's lines or rows for its own
    position."""
    owners: dict[str, str] = {}
    for consumer in consumers:
        for option in getattr(host.handlers[consumer.handler], "path_options", ()):
            value = consumer.handler_options.get(option)
            if not isinstance(value, str) or not value:
                continue
            key = f"consumers.{consumer.name}.{option}"
            owner = owners.setdefault(os.path.realpath(value), key)
            if owner != key:
                raise ConfigError(
                    f"{source}: {key} = {value!r} is also the file of {owner}: two consumers "
                    "writing one file mix their records; give each its own file",
                    source=source,
                    key=key,
                )


def _ingest(name: str, table: Any, source: str, host: PluginHost) -> IngestSettings:
    where = f"ingest.{name}"
    if not isinstance(table, Mapping):
        raise _fail(source, where, f"must be a table, got {table!r}")
    options = dict(table)
    kind = _registered(
        options.pop("source", None),
        f"{where}.source",
        source,
        host.ingest_sources,
        "ingest source",
        options,
    )
    _check_declared(
        host.ingest_sources[kind], options, source, where, f"{kind} ingest source", ("source",)
    )
    return IngestSettings(name, kind, options)
