"""Configuration-driven assembly: ``chanlog.open(...)`` builds an :class:`EventStore` from a
``chanlog.toml``, a ``pyproject.toml`` with ``[tool.chanlog]``, a dict or keyword arguments.

The settings (ADR 0014)::

    serializer = "json"                            # any registered serializer
    projections = ["objective", "channel", "messages"]  # default: every registered one
    checkpoint_every = 32                          # entity checkpoints (ADR 0020); 0: none

    [backend]
    name = "sqlite"                                # any registered backend
    path = "chanlog.db"                            # relative to this file's directory
    durability = "full"                            # further keys go to the backend factory

    [snapshots]                                    # default: every-n-events, n = 1000
    policy = "every-n-events"                      # any registered snapshot policy
    n = 1000                                       # further keys go to the policy factory

Every name is looked up in the plugin host's registries, so whatever a plugin registered can
be selected here. Every mistake is a :class:`~chanlog.errors.ConfigError` that names the file,
the key, the bad value and the allowed values; an unknown key is a mistake, never ignored.

No backend is special here. A backend whose factory declares a ``file_option`` (see
:class:`FileBackedFactory`; the built-in ``sqlite`` declares ``"path"``) keeps its log in one
file: that option is resolved against the configuration file's directory, defaults to
``chanlog.db`` there, and a read-only open refuses a file that does not exist.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from chanlog.bus.settings import BusSettings, read_bus_settings
from chanlog.checkpoints import DEFAULT_CHECKPOINT_EVERY
from chanlog.errors import ChanlogError, ConfigError, NotFound
from chanlog.factories import (
    FileBackedFactory,
    accepted_options,
    accepts_keyword,
    construct,
    file_option_of,
    misspelling_hint,
)
from chanlog.plugins.host import PluginHost, default_host
from chanlog.store import EventStore

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_BACKEND",
    "DEFAULT_LOG_FILE",
    "DEFAULT_SNAPSHOT_POLICY",
    "PYPROJECT_FILENAME",
    "FileBackedFactory",
    "StoreConfig",
    "accepts_keyword",
    "build_store",
    "file_backend",
    "file_option_of",
    "find_config",
    "load_config",
    "open_store",
    "read_settings",
]

CONFIG_FILENAME = "chanlog.toml"
PYPROJECT_FILENAME = "pyproject.toml"
DEFAULT_BACKEND = "sqlite"
"""Config files describe a durable node, so the embedded durable backend is their default."""
DEFAULT_LOG_FILE = "chanlog.db"
"""The file a file-backed backend uses when the settings name none (in the configuration
file's directory, else the current one)."""
DEFAULT_SNAPSHOT_POLICY = "every-n-events"
"""The policy of a configured store whose settings have no ``[snapshots]`` table."""

TOP_LEVEL_KEYS = (
    "backend",
    "bus",
    "checkpoint_every",
    "consumers",
    "ingest",
    "projections",
    "serializer",
    "snapshots",
)

PathLike = str | os.PathLike[str]
Source = PathLike | Mapping[str, Any]


def file_backend(
    file: PathLike, *, name: str = DEFAULT_BACKEND, plugins: PluginHost | None = None
) -> dict[str, Any]:
    """The ``backend`` setting that keeps the log in ``file`` with the file-backed backend
    ``name``: ``{"name": name, <its file option>: file}``.

    Raises:
        ConfigError: ``name`` is not registered, or keeps no file.
    """
    host = plugins or default_host()
    if name not in host.backends:
        raise _fail("<file_backend>", "backend.name", name, "no such backend", host.backends)
    option = file_option_of(host.backends[name])
    if option is None:
        file_backed = [key for key, value in host.backends.items() if file_option_of(value)]
        raise _fail("<file_backend>", "backend.name", name, "keeps no file", file_backed)
    return {"name": name, option: os.fspath(file)}


@attrs.frozen
class StoreConfig:
    """Validated settings, every name checked against the plugin host's registries.

    Attributes:
        source: where the settings came from (a file path, ``"<dict>"`` or ``"<kwargs>"``).
        backend: the registered backend name.
        backend_options: keyword options for the backend factory (paths already resolved).
        serializer: the registered serializer name.
        projections: projection names to fold inline (``None``: every registered one).
        snapshot_policy: the registered snapshot policy name (default ``every-n-events``,
            n = 1000), or ``None`` for the store's own default.
        snapshot_options: keyword options for the snapshot policy factory.
        checkpoint_every: events of one entity between two in-memory checkpoints
            (``0``: none); see :class:`~chanlog.checkpoints.EntityCheckpoints`.
        bus: the broker, the subject prefix, the consumers and the ingests
            (:mod:`chanlog.bus.settings`).
    """

    source: str
    backend: str = DEFAULT_BACKEND
    backend_options: Mapping[str, Any] = attrs.field(factory=dict)
    serializer: str = "json"
    projections: tuple[str, ...] | None = None
    snapshot_policy: str | None = None
    snapshot_options: Mapping[str, Any] = attrs.field(factory=dict)
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    bus: BusSettings = attrs.field(factory=BusSettings)


def _fail(source: str, key: str, value: Any, problem: str, allowed: Any = None) -> ConfigError:
    text = f"{source}: {key} = {_show(value)}: {problem}"
    if allowed is not None:
        names = ", ".join(sorted(allowed)) if not isinstance(allowed, str) else allowed
        text += f" (allowed: {names or 'none installed'})"
    return ConfigError(text, source=source, key=key)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def find_config(directory: PathLike | None = None) -> Path | None:
    """The configuration a directory provides: ``chanlog.toml``, else a ``pyproject.toml``
    that has a ``[tool.chanlog]`` table, else ``None``."""
    base = Path(directory) if directory is not None else Path.cwd()
    candidate = base / CONFIG_FILENAME
    if candidate.is_file():
        return candidate
    pyproject = base / PYPROJECT_FILENAME
    if pyproject.is_file():
        try:
            data = _load_toml(pyproject)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            # A broken pyproject.toml is someone else's file: it just offers no chanlog config.
            return None
        tool = data.get("tool")
        if isinstance(tool, dict) and "chanlog" in tool:
            return pyproject
    return None


_BOM = b"\xef\xbb\xbf"


def _load_toml(file: Path) -> dict[str, Any]:
    """``file`` parsed as TOML (UTF-8). A byte-order mark some editors put first (Windows'
    Notepad) is dropped: tomllib would refuse the whole file at "line 1, column 1"."""
    data = file.read_bytes()
    return tomllib.loads(data.removeprefix(_BOM).decode("utf-8"))


def read_settings(path: PathLike) -> dict[str, Any]:
    """The raw chanlog settings of a TOML file: the whole of a ``chanlog.toml`` or the
    ``[tool.chanlog]`` table of a ``pyproject.toml``.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or a pyproject.toml without
            ``[tool.chanlog]``.
    """
    file = Path(path)
    source = str(file)
    try:
        data = _load_toml(file)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such configuration file", source=source) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a TOML file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}", source=source) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not valid TOML: not UTF-8 text", source=source) from None
    except ValueError:  # a NUL byte in the name
        raise ConfigError(f"{source!r}: not a usable file name", source=source) from None
    if file.name == PYPROJECT_FILENAME:
        tool = data.get("tool")
        section = tool.get("chanlog") if isinstance(tool, dict) else None
        if section is None:
            raise ConfigError(
                f"{source}: has no [tool.chanlog] table", source=source, key="tool.chanlog"
            )
        if not isinstance(section, dict):
            raise _fail(source, "tool.chanlog", section, "must be a table")
        return section
    return data


def load_config(
    source: Source | None = None,
    /,
    *,
    plugins: PluginHost | None = None,
    **settings: Any,
) -> StoreConfig:
    """Validate settings into a :class:`StoreConfig` without opening anything.

    Args:
        source: a path to ``chanlog.toml`` or ``pyproject.toml``, or a settings mapping.
            ``None`` with no ``settings``: the configuration of the current directory
            (see :func:`find_config`).
        plugins: the host whose registries names are checked against (default: the
            process-wide one).
        settings: top-level settings; they override those of ``source``.

    Raises:
        ConfigError: naming the source, the key, the bad value and the allowed values.
    """
    host = plugins or default_host()
    base_dir: Path | None = None
    if source is None and not settings:
        found = find_config()
        if found is None:
            raise ConfigError(
                f"no {CONFIG_FILENAME} (or [tool.chanlog] in {PYPROJECT_FILENAME}) in "
                f"{Path.cwd()}; pass a path, a dict or keyword arguments",
                source=str(Path.cwd()),
            )
        source = found
    if source is None:
        name, raw = "<kwargs>", {}
    elif isinstance(source, Mapping):
        name, raw = "<dict>", dict(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        name, raw = str(path), read_settings(path)
        base_dir = path.resolve().parent
    else:
        raise ConfigError(
            f"configuration source must be a path or a mapping, got {type(source).__name__}",
            source=repr(source),
        )
    raw.update(settings)
    return _validate(raw, name, host, base_dir)


def _validate(
    raw: Mapping[str, Any], source: str, host: PluginHost, base: Path | None
) -> StoreConfig:
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise _fail(source, str(key), raw[key], "unknown key", TOP_LEVEL_KEYS)
    backend, backend_options = _named_table(
        raw, "backend", "name", DEFAULT_BACKEND, source, host.backends
    )
    file_option = file_option_of(host.backends[backend])
    if file_option is not None:
        _resolve_file(backend_options, file_option, base)
    _check_options(host.backends[backend], backend_options, source, "backend")
    serializer = raw.get("serializer", "json")
    if not isinstance(serializer, str):
        raise _fail(source, "serializer", serializer, "must be a string", host.serializers)
    if serializer not in host.serializers:
        raise _fail(source, "serializer", serializer, "no such serializer", host.serializers)
    projections = _projections(raw, source, host)
    checkpoint_every = raw.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY)
    if type(checkpoint_every) is not int or checkpoint_every < 0:
        raise _fail(source, "checkpoint_every", checkpoint_every, "must be an integer >= 0")
    # A configured store is a durable node whose restarts should replay only a tail, so it
    # snapshots by default (EventStore() alone keeps "never").
    policy: str | None = DEFAULT_SNAPSHOT_POLICY
    if policy not in host.snapshot_policies:
        policy = None
    policy_options: dict[str, Any] = {}
    if "snapshots" in raw:
        policy, policy_options = _named_table(
            raw, "snapshots", "policy", None, source, host.snapshot_policies
        )
        _check_options(host.snapshot_policies[policy], policy_options, source, "snapshots")
    return StoreConfig(
        source=source,
        backend=backend,
        backend_options=backend_options,
        serializer=serializer,
        projections=projections,
        snapshot_policy=policy,
        snapshot_options=policy_options,
        checkpoint_every=checkpoint_every,
        bus=read_bus_settings(raw, source, host, base),
    )


def _named_table(
    raw: Mapping[str, Any],
    key: str,
    name_key: str,
    default: str | None,
    source: str,
    registry: Mapping[str, Any],
) -> tuple[str, dict[str, Any]]:
    """Read ``key`` as either a bare name or a table ``{name_key = ..., options...}``."""
    value = raw.get(key, {})
    if isinstance(value, str):
        name: Any = value
        options: dict[str, Any] = {}
        where = key
    elif isinstance(value, Mapping):
        options = dict(value)
        name = options.pop(name_key, default)
        where = f"{key}.{name_key}"
    else:
        raise _fail(source, key, value, f"must be a name or a table with {name_key!r}")
    if name is None:
        allowed = f"(allowed: {', '.join(sorted(registry))}){misspelling_hint(options, name_key)}"
        raise ConfigError(f"{source}: {where} is required {allowed}", source=source, key=where)
    if not isinstance(name, str):
        raise _fail(source, where, name, "must be a string", registry)
    if name not in registry:
        raise _fail(source, where, name, f"no such {key.rstrip('s')}", registry)
    return name, options


def _resolve_file(options: dict[str, Any], option: str, base: Path | None) -> None:
    """A relative log file means relative to the config file, not to wherever the process
    happens to run; none at all means :data:`DEFAULT_LOG_FILE` (config files describe a
    durable node, whose log must not silently live in memory)."""
    if option not in options:
        options[option] = str((base or Path.cwd()) / DEFAULT_LOG_FILE)
        return
    path = options[option]
    if base is not None and isinstance(path, str) and path and not Path(path).is_absolute():
        options[option] = str(base / path)


def _check_options(
    factory: Callable[..., Any], options: Mapping[str, Any], source: str, table: str
) -> None:
    """Refuse keys the factory does not take, when it says which it takes
    (:func:`~chanlog.factories.accepted_options`); one that cannot say validates its own
    options, and construct() adds the source to its errors."""
    accepted = accepted_options(factory)
    for key in options:
        if accepted is not None and key not in accepted:
            raise _fail(source, f"{table}.{key}", options[key], "unknown key", accepted)


def _projections(raw: Mapping[str, Any], source: str, host: PluginHost) -> tuple[str, ...] | None:
    if "projections" not in raw:
        return None
    value = raw["projections"]
    if not isinstance(value, list | tuple):
        raise _fail(source, "projections", value, "must be a list of names", host.projections)
    names: list[str] = []
    for index, name in enumerate(value):
        key = f"projections[{index}]"
        if not isinstance(name, str):
            raise _fail(source, key, name, "must be a string", host.projections)
        if name not in host.projections:
            raise _fail(source, key, name, "no such projection", host.projections)
        if name in names:
            raise _fail(source, key, name, "listed twice")
        names.append(name)
    return tuple(names)


def open_store(
    source: Source | None = None,
    /,
    *,
    plugins: PluginHost | None = None,
    read_only: bool = False,
    create: bool = True,
    **settings: Any,
) -> EventStore:
    """Assemble an :class:`~chanlog.EventStore` from configuration (``chanlog.open``).

    Examples::

        store = chanlog.open("chanlog.toml")
        store = chanlog.open("pyproject.toml")            # its [tool.chanlog] table
        store = chanlog.open({"backend": {"name": "sqlite", "path": "node.db"}})
        store = chanlog.open(backend="memory", serializer="json")
        store = chanlog.open("chanlog.toml", read_only=True, projections=[])  # inspect

    Args:
        source: as for :func:`load_config`.
        plugins: the plugin host providing the named parts (default: the process-wide one).
        read_only: open an existing log to read it, never creating one; see
            :func:`build_store`.
        create: with ``False``, open an existing log for writing, never creating one.
        settings: top-level settings, overriding those of ``source``.

    Raises:
        ConfigError: a bad setting, naming the file, the key, the value and what is allowed.
        NotFound: ``read_only`` or ``create=False``, and the log does not exist.
        StorageError: the backend could not open its storage.
    """
    host = plugins or default_host()
    config = load_config(source, plugins=host, **settings)
    return build_store(config, plugins=host, read_only=read_only, create=create)


def build_store(
    config: StoreConfig,
    *,
    plugins: PluginHost | None = None,
    read_only: bool = False,
    create: bool = True,
) -> EventStore:
    """Open the store a validated :class:`StoreConfig` describes.

    Args:
        config: the validated settings.
        plugins: the plugin host providing the named parts (default: the process-wide one).
        read_only: open an existing log to read it. The backend factory gets
            ``read_only=True`` when its signature has a ``read_only`` parameter (the backend
            then refuses writes and creates nothing). A file-backed backend's file
            (:class:`FileBackedFactory`) must already exist, whatever the factory supports,
            so a misspelled path is a :class:`~chanlog.errors.NotFound` that names it
            instead of a new, empty log. Open with ``projections=[]`` as well to look at a
            log whose records no longer fold.
        create: with ``False``, a missing log is refused the same way, but an existing
            one is opened for writing (the factory gets ``create=False`` if it takes it).

    Raises:
        NotFound: ``read_only`` or ``create=False``, and the log does not exist.
    """
    host = plugins or default_host()
    source = config.source
    factory = host.backends[config.backend]
    options = dict(config.backend_options)
    missing: NotFound | None = None
    create = create and options.get("create") is not False  # `create = false` in the file
    if read_only or not create:
        missing = _missing_log_file(factory, options, config, read_only=read_only)
        option, value = ("read_only", True) if read_only else ("create", False)
        if accepts_keyword(factory, option):
            # The backend checks its options first and then refuses the missing log
            # itself, so a misspelled option is reported before the file it may explain.
            options[option] = value
        elif missing is not None:
            raise missing
    policy = None
    if config.snapshot_policy is not None:
        built = construct(
            host.snapshot_policies[config.snapshot_policy],
            config.snapshot_options,
            table="snapshots",
            source=source,
            host=host,
            kind="snapshot_policies",
            name=config.snapshot_policy,
        )
        policy = host.checked("snapshot_policies", config.snapshot_policy, built)
    # Plugin parts that can be built without the log are built before the backend, which
    # may create it: a faulty one then leaves nothing behind (ADR 0066).
    serializer = host.checked_lookup("serializers", config.serializer)()
    backend = host.checked(
        "backends", config.backend, _open_backend(factory, options, config, missing, host)
    )
    extra: dict[str, Any] = {} if policy is None else {"snapshot_policy": policy}
    if not read_only:  # a store opened to look at the log needs no network broker
        extra.update(
            broker=config.bus.broker,
            broker_options=config.bus.broker_options,
        )
    extra["bus_prefix"] = config.bus.prefix
    try:
        return EventStore(
            backend,
            plugins=host,
            serializer=serializer,
            projections=config.projections,
            checkpoint_every=config.checkpoint_every,
            **extra,
        )
    except BaseException:
        # A projection's or broker's factory, or a chanlog_store_opened hook, failed. A log
        # the backend just created stays, empty (the next open uses it): removing it could
        # remove it under another process that opened it meanwhile (ADR 0066).
        backend.close()
        raise


def _open_backend(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    config: StoreConfig,
    missing: NotFound | None,
    host: PluginHost,
) -> Any:
    """Call the backend factory; when the log file is ``missing`` (``read_only`` or
    ``create=False``), any refusal but a :class:`ConfigError` becomes that
    :class:`NotFound`, so every file-backed backend reports a missing log the same way
    (exit code 3 in the CLI)."""
    try:
        backend = construct(
            factory,
            options,
            table="backend",
            source=config.source,
            host=host,
            kind="backends",
            name=config.backend,
        )
    except ConfigError:
        raise
    except ChanlogError as exc:
        if missing is None:
            raise
        raise missing from exc
    if missing is None:
        return backend
    # A read-only backend that opened a file which does not exist broke its contract; the
    # caller still learns that there was no log.
    backend.close()
    raise missing


def _missing_log_file(
    factory: Callable[..., Any], options: Mapping[str, Any], config: StoreConfig, *, read_only: bool
) -> NotFound | None:
    """The error for a file-backed log whose file does not exist, or ``None``.

    Checked here rather than left to each backend so that every file-backed backend, a
    plugin's included, gives the same error."""
    option = file_option_of(factory)
    file = options.get(option) if option is not None else None
    if not isinstance(file, str | os.PathLike):
        return None  # no file named: the backend refuses that with its own ConfigError
    try:
        os.stat(file)
    except FileNotFoundError:
        how = "read-only" if read_only else "with create=False"
        return NotFound(
            f"no log file {os.fspath(file)} (backend {config.backend!r}, from {config.source});"
            f" opened {how}, so nothing was created"
        )
    except (OSError, ValueError):
        pass  # a name no file can have, or an unreadable directory: the backend says which
    return None
