"""The plugin host: one pluggy manager, the built-ins, the entry points, and the registries
they fill.

Registries are built lazily and rebuilt when a plugin is added or removed at runtime. Each
registration hook implementation is called on its own, so every registered name is
attributed to the plugin that registered it; two plugins registering one name is a
:class:`~chanlog.errors.PluginError` that names both.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import attrs
import pluggy

from chanlog.errors import ChanlogError, PluginError
from chanlog.events.base import Event
from chanlog.plugins import hookspecs
from chanlog.plugins.contracts import check_built

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Contribution",
    "PluginHost",
    "default_host",
    "reset_default_host",
]

ENTRY_POINT_GROUP = "chanlog"

logger = logging.getLogger("chanlog.plugins")

BUILTIN_PLUGINS: tuple[str, ...] = (
    "chanlog.plugins.builtin_events",
    "chanlog.plugins.builtin_storage",
    "chanlog.plugins.builtin_projections",
    "chanlog.plugins.builtin_snapshots",
    "chanlog.plugins.builtin_bus",
)
"""Modules registered as plugins before any entry point, in this order."""

KINDS = (
    "event_types",
    "projections",
    "snapshot_policies",
    "serializers",
    "backends",
    "brokers",
    "handlers",
    "ingest_sources",
    "telemetry",
)
_SINGULAR = {
    "event_types": "event type",
    "projections": "projection",
    "snapshot_policies": "snapshot policy",
    "serializers": "serializer",
    "backends": "backend",
    "brokers": "broker",
    "handlers": "handler",
    "ingest_sources": "ingest source",
    "telemetry": "telemetry provider",
}


@attrs.frozen
class Contribution:
    """One name one plugin registered: ``kind`` is one of the registry names."""

    plugin: str
    kind: str
    name: str


def _env_list(name: str) -> frozenset[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _warn_unknown_names(installed: set[str], *settings: tuple[str, frozenset[str], str]) -> None:
    """Warn about a name in a plugin setting that is no installed plugin (a typo would
    otherwise keep a plugin enabled, or leave it out, without a word). A warning, not a
    refusal: one setting may serve machines that do not all install a plugin (ADR 0069)."""
    known = ", ".join(sorted(installed)) or "none"
    for variable, names, verb in settings:
        for name in sorted(names - installed):
            logger.warning(
                "%s names %r, which is no installed plugin: it %s nothing (installed plugins: %s)",
                variable,
                name,
                verb,
                known,
            )


class PluginHost:
    """A pluggy plugin manager plus the registries its plugins filled.

    Args:
        load_entry_points: load third-party plugins from the ``chanlog`` entry-point group,
            filtered by ``CHANLOG_LOAD_PLUGINS`` (allow-list, comma separated) and
            ``CHANLOG_DISABLE_PLUGINS`` (block-list).
        builtins: the built-in plugin modules to register first.
    """

    def __init__(
        self, *, load_entry_points: bool = True, builtins: Iterable[str] = BUILTIN_PLUGINS
    ) -> None:
        self.manager = pluggy.PluginManager("chanlog")
        self.manager.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._registries: dict[str, dict[str, Any]] | None = None
        self._contributions: list[Contribution] = []
        self._owners: dict[tuple[str, str], str] = {}
        self._installed: set[str] = set()
        """Plugins loaded from entry points (``CHANLOG_DISABLE_PLUGINS`` can skip those)."""
        self.generation = 0
        """Incremented whenever a plugin is added or removed, so holders of registry
        snapshots (stores) can tell theirs is stale without rebuilding it per call."""
        for module_name in builtins:
            module = importlib.import_module(module_name)
            self.manager.register(module, name=module_name)
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        allowed = _env_list("CHANLOG_LOAD_PLUGINS")
        blocked = _env_list("CHANLOG_DISABLE_PLUGINS") or frozenset()
        points = list(entry_points(group=ENTRY_POINT_GROUP))
        _warn_unknown_names(
            {point.name for point in points},
            ("CHANLOG_LOAD_PLUGINS", allowed or frozenset(), "loads"),
            ("CHANLOG_DISABLE_PLUGINS", blocked, "disables"),
        )
        for entry_point in points:
            if allowed is not None and entry_point.name not in allowed:
                continue
            if entry_point.name in blocked or self.manager.get_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:
                # The operator may need chanlog working before the plugin is mended: name
                # the switch that skips it.
                raise PluginError(
                    f"plugin {entry_point.name!r} ({entry_point.value}) failed to load: {exc}; "
                    f"to run without it, set CHANLOG_DISABLE_PLUGINS={entry_point.name}",
                    plugin=entry_point.name,
                ) from exc
            self._installed.add(entry_point.name)
            try:
                self.register(plugin, name=entry_point.name)
            except PluginError:
                self._installed.discard(entry_point.name)
                raise

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module at runtime; return its name.

        The registries are rebuilt on next use, so a duplicate name surfaces as a
        :class:`PluginError` then (and the plugin is unregistered again).
        """
        with self._lock:
            try:
                registered = self.manager.register(plugin, name=name)
            except ValueError as exc:
                raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
            if registered is None:  # pragma: no cover - pluggy returns None only when blocked
                raise PluginError(f"plugin {name or plugin!r} is blocked")
            self._registries = None
            self.generation += 1
            try:
                self._build()
            except PluginError:
                self.manager.unregister(name=registered)
                self._registries = None
                self.generation += 1
                raise
            return registered

    def unregister(self, name: str) -> None:
        """Remove a plugin by name."""
        with self._lock:
            if self.manager.get_plugin(name) is None:
                raise PluginError(f"no plugin named {name!r} is registered")
            self.manager.unregister(name=name)
            self._registries = None
            self.generation += 1

    def plugin_names(self) -> list[str]:
        """Names of every registered plugin, built-ins first."""
        return [name for name, _ in self.manager.list_name_plugin()]

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``host.hook.chanlog_store_opened(store=...)``)."""
        return self.manager.hook

    def contributions(self) -> list[Contribution]:
        """Everything every plugin registered, in registration order."""
        self._get()
        return list(self._contributions)

    def _get(self) -> dict[str, dict[str, Any]]:
        registries = self._registries
        if registries is None:
            with self._lock:
                registries = self._registries or self._build()
        return registries

    def _build(self) -> dict[str, dict[str, Any]]:
        registries: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        owners: dict[tuple[str, str], str] = {}
        contributions: list[Contribution] = []

        def collect(kind: str, hook_name: str, adapt: Callable[..., tuple[str, Any]]) -> None:
            hook = getattr(self.manager.hook, hook_name)
            # get_hookimpls() lists plugins in registration order (pluggy *calls* them in
            # reverse); the first to register a name owns it.
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name

                def register(*args: Any, _plugin: str = plugin_name) -> None:
                    name, value = adapt(*args)
                    owner = owners.get((kind, name))
                    if owner is not None:
                        raise PluginError(
                            f"{_SINGULAR[kind]} {name!r} is registered twice: "
                            f"by plugin {owner!r} and by plugin {_plugin!r}"
                            + self._advice(_plugin, owner),
                            plugin=_plugin,
                        )
                    owners[(kind, name)] = _plugin
                    registries[kind][name] = value
                    contributions.append(Contribution(_plugin, kind, name))

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise self._failed(plugin_name, hook_name, exc) from exc

        collect("event_types", "chanlog_register_event_types", _adapt_event_type)
        collect("projections", "chanlog_register_projections", _adapt_named)
        collect("snapshot_policies", "chanlog_register_snapshot_policies", _adapt_named)
        collect("serializers", "chanlog_register_serializers", _adapt_named)
        collect("backends", "chanlog_register_backends", _adapt_named)
        collect("brokers", "chanlog_register_brokers", _adapt_named)
        collect("handlers", "chanlog_register_handlers", _adapt_named)
        collect("ingest_sources", "chanlog_register_ingest_sources", _adapt_named)
        collect("telemetry", "chanlog_register_telemetry", _adapt_provider)
        self._contributions = contributions
        self._owners = owners
        self._registries = registries
        return registries

    def _advice(self, *plugins: str) -> str:
        """How to run without the installed ones of ``plugins`` (``""``: none is)."""
        names = [name for name in plugins if name in self._installed]
        if not names:
            return ""
        settings = " or ".join(f"CHANLOG_DISABLE_PLUGINS={name}" for name in names)
        return f"; to run without {'it' if len(names) == 1 else 'one'}, set {settings}"

    def _failed(self, plugin: str, hook: str, exc: Exception) -> PluginError:
        return PluginError(
            f"plugin {plugin!r}: {hook} raised {type(exc).__name__}: {exc}" + self._advice(plugin),
            plugin=plugin,
        )

    def owner(self, kind: str, name: str) -> str | None:
        """The plugin that registered ``name`` of ``kind`` (``None``: nothing did)."""
        self._get()
        return self._owners.get((kind, name))

    def describe(self, kind: str, name: str) -> str:
        """How errors name a registered part: ``"serializer 'zjson' (registered by plugin
        'example'; ...)"``, with the switch that skips an installed plugin."""
        what = f"{_SINGULAR.get(kind, kind)} {name!r}"
        plugin = self.owner(kind, name)
        if plugin is None:
            return what
        return f"{what} (registered by plugin {plugin!r}{self._advice(plugin)})"

    def checked(self, kind: str, name: str, value: Any) -> Any:
        """``value``, built by the factory registered as ``name`` of ``kind``, once it
        implements the protocol of that kind (:mod:`chanlog.plugins.contracts`).

        Raises:
            PluginError: it does not, naming the part, its plugin and what is missing.
        """
        return check_built(kind, self.describe(kind, name), value, plugin=self.owner(kind, name))

    def checked_lookup(self, kind: str, name: str) -> Callable[..., Any]:
        """Like :meth:`lookup`, but what the returned factory builds is :meth:`checked`,
        and a factory that raises (anything but a chanlog error) is a
        :class:`~chanlog.errors.PluginError` naming the part and its plugin (ADR 0061)."""
        factory = self.lookup(kind, name)

        def build(*args: Any, **kwargs: Any) -> Any:
            try:
                built = factory(*args, **kwargs)
            except ChanlogError:
                raise
            except Exception as exc:
                raise self.factory_failed(kind, name, exc) from exc
            return self.checked(kind, name, built)

        return build

    def factory_failed(self, kind: str, name: str, error: Exception) -> PluginError:
        """The error for the factory registered as ``name`` of ``kind`` raising ``error``
        (anything but a chanlog error: a bug in the plugin), naming the part and its
        plugin (ADR 0061)."""
        return PluginError(
            f"{self.describe(kind, name)}: its factory raised {error!r}",
            plugin=self.owner(kind, name),
        )

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call the lifecycle hook ``hook_name`` (``chanlog_store_opened``,
        ``chanlog_store_closing``) of every plugin, in pluggy's order, each with the
        arguments it names.

        Raises:
            PluginError: an implementation raised; it names the plugin and the hook (the
                implementations after it are not called).
        """
        hook = getattr(self.manager.hook, hook_name)
        impls = hook.get_hookimpls()
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            try:  # wrappers need pluggy's own call; the error then names the hook only
                hook(**kwargs)
            except ChanlogError:
                raise
            except Exception as exc:
                raise PluginError(f"{hook_name} raised {type(exc).__name__}: {exc}") from exc
            return
        for impl in reversed(impls):
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                raise self._failed(impl.plugin_name, hook_name, exc) from exc

    @property
    def event_types(self) -> Mapping[str, type[Event]]:
        """Wire name → event class."""
        return self._get()["event_types"]

    @property
    def projections(self) -> Mapping[str, Callable[[], Any]]:
        """Projection name → factory."""
        return self._get()["projections"]

    @property
    def snapshot_policies(self) -> Mapping[str, Callable[..., Any]]:
        """Snapshot policy name → factory."""
        return self._get()["snapshot_policies"]

    @property
    def serializers(self) -> Mapping[str, Callable[[], Any]]:
        """Serializer name → factory."""
        return self._get()["serializers"]

    @property
    def backends(self) -> Mapping[str, Callable[..., Any]]:
        """Backend name → factory."""
        return self._get()["backends"]

    @property
    def brokers(self) -> Mapping[str, Callable[..., Any]]:
        """Bus broker name → factory."""
        return self._get()["brokers"]

    @property
    def handlers(self) -> Mapping[str, Callable[..., Any]]:
        """Durable-consumer handler name → factory."""
        return self._get()["handlers"]

    @property
    def ingest_sources(self) -> Mapping[str, Callable[..., Any]]:
        """Ingest source name → factory."""
        return self._get()["ingest_sources"]

    @property
    def telemetry(self) -> Mapping[str, Any]:
        """Telemetry provider name → :class:`chanlog.telemetry.TelemetryProvider`."""
        return self._get()["telemetry"]

    def lookup(self, kind: str, name: str) -> Any:
        """Find a registered ``name`` of ``kind``; a clear :class:`PluginError` lists the
        installed names when it is missing."""
        registry = self._get()[kind]
        try:
            return registry[name]
        except KeyError:
            installed = ", ".join(sorted(registry)) or "none"
            raise PluginError(
                f"no {_SINGULAR.get(kind, kind)} named {name!r}; installed: {installed}"
            ) from None


def _adapt_event_type(cls: Any) -> tuple[str, Any]:
    if not (isinstance(cls, type) and issubclass(cls, Event)) or not attrs.has(cls):
        raise PluginError(f"an event type must be an attrs subclass of chanlog.Event, got {cls!r}")
    name = getattr(cls, "event_type", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"event class {cls.__name__} has no event_type wire name")
    _refuse_nul(name, f"event class {cls.__name__}: the event_type wire name")
    group = getattr(cls, "group", None)
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise PluginError(
            f"event class {cls.__name__} ({name}): group must be one subject token of "
            f"letters, digits, '_' and '-', got {group!r}"
        )
    return name, cls


def _refuse_nul(name: str, what: str) -> None:
    """A name holding a NUL is refused: PostgreSQL's text cannot store one, and an event
    type's, a projection's and a serializer's names are stored (ADR 0070)."""
    if "\x00" in name:
        raise PluginError(f"{what} {name!r} holds a NUL character, which no name may hold")


def _adapt_named(name: Any, factory: Any) -> tuple[str, Any]:
    if not isinstance(name, str) or not name:
        raise PluginError(f"a registered name must be a non-empty string, got {name!r}")
    _refuse_nul(name, "the registered name")
    if not callable(factory):
        raise PluginError(f"{name!r}: the registered factory must be callable, got {factory!r}")
    return name, factory


def _adapt_provider(name: Any, provider: Any) -> tuple[str, Any]:
    if not isinstance(name, str) or not name:
        raise PluginError(f"a registered name must be a non-empty string, got {name!r}")
    _refuse_nul(name, "the registered name")
    for method in ("for_store", "serve_metrics"):
        if not callable(getattr(provider, method, None)):
            raise PluginError(f"telemetry provider {name!r} has no {method}() method")
    return name, provider


_GROUP = re.compile(r"[A-Za-z0-9_-]+")

_default: PluginHost | None = None
_default_lock = threading.Lock()


def default_host() -> PluginHost:
    """The process-wide host (built-ins plus entry points), created on first use."""
    global _default
    host = _default
    if host is None:
        with _default_lock:
            host = _default
            if host is None:
                host = _default = PluginHost()
    return host


def reset_default_host() -> None:
    """Forget the process-wide host, so the next use reloads plugins (tests, env changes)."""
    global _default
    with _default_lock:
        _default = None
