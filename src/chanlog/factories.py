"""What chanlog reads off a registered factory: whether its backend keeps its log in a file
(and which option names it), and which keyword options it takes; and how it calls one with a
configuration table's options. Used by the configuration, the CLI, ``chanlog init`` and the
worker of ``chanlog run``, so no backend, handler or ingest source is special."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chanlog.errors import ChanlogError, ConfigError, PluginError

if TYPE_CHECKING:
    from chanlog.plugins.host import PluginHost

__all__ = [
    "FileBackedFactory",
    "accepted_options",
    "accepts_keyword",
    "construct",
    "file_option_of",
    "misspelling_hint",
    "option_problem",
    "required_keywords",
    "required_options",
]


@runtime_checkable
class FileBackedFactory(Protocol):
    """A backend factory whose backend keeps its log in one file.

    A plugin opts in by giving its registered factory a ``file_option`` attribute naming
    the keyword option that holds the file (a class attribute of the backend class works):

    - a relative file in a configuration file is relative to that file's directory, and a
      missing one defaults to :data:`chanlog.config.DEFAULT_LOG_FILE` there;
    - ``chanlog --db FILE`` passes ``FILE`` as that option;
    - a read-only open (:func:`chanlog.config.build_store`) refuses a file that does not
      exist, so a typo creates nothing;
    - ``chanlog init`` writes that option, commented.
    """

    file_option: str
    """The name of the keyword option that holds the log file (``"path"`` for SQLite)."""

    def __call__(self, *args: Any, **options: Any) -> Any:
        """Open the backend."""


def file_option_of(factory: object) -> str | None:
    """The option naming the log file of a backend ``factory``, or ``None`` for a backend
    that keeps no file (memory, PostgreSQL)."""
    if isinstance(factory, FileBackedFactory):
        option = factory.file_option
        if isinstance(option, str) and option:
            return option
    return None


def accepts_keyword(factory: Callable[..., Any], name: str) -> bool:
    """True when ``factory``'s signature has a parameter ``name`` that can be passed by
    keyword. A bare ``**options`` does not count: the built-in backends take one only to
    refuse unknown keys by name, so they would refuse a ``name`` they do not declare."""
    try:
        parameter = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def required_keywords(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword parameters of ``factory`` that have no default: the options a
    configuration must give it, since it is called with keywords only."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return ()
    return tuple(
        parameter.name
        for parameter in parameters
        if parameter.default is inspect.Parameter.empty
        and parameter.kind
        in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def _names(value: object) -> tuple[str, ...] | None:
    if isinstance(value, tuple) and all(isinstance(name, str) for name in value):
        return value
    return None


def accepted_options(factory: Callable[..., Any]) -> tuple[str, ...] | None:
    """The options ``factory`` takes, known before it is called: its ``accepted_options``
    attribute (a tuple of names, for a factory taking ``**options``), else its keyword
    parameters when it has no ``**options``; ``None`` when they cannot be known."""
    declared = _names(getattr(factory, "accepted_options", None))
    if declared is not None:
        return declared
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return tuple(
        parameter.name
        for parameter in parameters
        if parameter.kind
        in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def required_options(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The options ``factory`` cannot do without: its ``required_options`` attribute (a
    tuple of names), else its keyword parameters without a default."""
    declared = _names(getattr(factory, "required_options", None))
    return declared if declared is not None else required_keywords(factory)


def misspelling_hint(table: Mapping[str, Any], name_key: str) -> str:
    """What to add to "``name_key`` is required" about a ``table`` that has other keys: the
    one it lacks is most often among them, misspelled (``handlr``), and the refusal is
    the one line an operator reads."""
    if not table:
        return ""
    keys = ", ".join(sorted(table))
    return f"; the table's keys are {keys}: is one of them a misspelling of {name_key}?"


def option_problem(
    factory: Callable[..., Any], options: Mapping[str, Any], given: tuple[str, ...] = ()
) -> tuple[str, str, tuple[str, ...]] | None:
    """The first thing wrong with ``options`` for ``factory``, as far as it declares what
    it takes (:func:`accepted_options`, :func:`required_options`), leaving out the keywords
    chanlog itself passes (``given``): ``("unknown", key, takes)`` for a key it does not
    take (``takes``: what it does, in its order), else ``("missing", key, takes)`` for one it
    needs; ``None`` when there is none. Unknown keys come first: a typo is named as such,
    before the option it misspells is found missing."""
    accepted = accepted_options(factory)
    takes = () if accepted is None else tuple(n for n in accepted if n not in given)
    if accepted is not None:
        for key in sorted(options):
            if key not in takes:
                return "unknown", key, takes
    for required in required_options(factory):
        if required not in given and required not in options:
            return "missing", required, takes
    return None


def _binds(factory: Callable[..., Any], options: Mapping[str, Any]) -> bool:
    """Whether ``factory``'s signature takes ``options`` as keywords (``True`` when it has no
    signature to ask)."""
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        return False
    except ValueError:  # builtins without a signature
        return True
    return True


def construct(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    table: str,
    source: str | None,
    host: PluginHost,
    kind: str,
    name: str,
) -> Any:
    """Call ``factory``, registered as ``name`` of ``kind``, with the options of the
    configuration table ``table`` (read from ``source``, when there is a file).

    Raises:
        ConfigError: the factory's own, under the table and with the source; or options its
            signature does not take (a missing required one), naming the part.
        PluginError: any other exception that is no chanlog error, a ``TypeError`` raised
            inside the factory included: the host's :meth:`~PluginHost.factory_failed`
            error, naming the part and its plugin, after the table (ADR 0061).
    """
    where = f"[{table}]" if source is None else f"{source}: [{table}]"
    try:
        return factory(**options)
    except ConfigError as exc:
        if exc.source is not None:
            raise
        key = exc.key or table
        if not (key == table or key.startswith(f"{table}.")):
            key = f"{table}.{key}"
        raise ConfigError(f"{where} {exc}", source=source, key=key) from exc
    except ChanlogError:
        raise
    except Exception as exc:
        if isinstance(exc, TypeError) and not _binds(factory, options):
            raise ConfigError(
                f"{where} options rejected by the {host.describe(kind, name)}: {exc}",
                source=source,
                key=table,
            ) from exc
        failed = host.factory_failed(kind, name, exc)
        raise PluginError(f"{where} {failed}", plugin=failed.plugin) from exc
