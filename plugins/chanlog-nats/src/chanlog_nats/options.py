"""Option checks shared by the relay, the broker and the ingest: a bad option is a
:class:`~chanlog.errors.ConfigError` naming the option, raised before anything connects.

Options come from TOML tables (typed values) or from ``chanlog ingest nats --key value``
(strings), so numbers and flags are also accepted as their text.
"""

from __future__ import annotations

import contextlib
import re

from chanlog.errors import ConfigError

__all__ = [
    "DEFAULT_URL",
    "check_choice",
    "check_flag",
    "check_int",
    "check_name",
    "check_no_more",
    "check_seconds",
    "check_url",
]

DEFAULT_URL = "nats://127.0.0.1:4222"
"""The server every part connects to when no ``url`` is given."""

# JetStream stream and consumer names: no whitespace, dots, wildcards or path separators.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _fail(what: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{what}: {key} {problem}", key=key)


def check_url(what: str, value: object) -> str:
    """One ``nats://`` (or ``tls://``) URL, or several separated by commas."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(what, "url", f"must be a nats:// URL, got {value!r}")
    for url in value.split(","):
        if not re.fullmatch(r"(nats|tls|ws|wss)://\S+", url.strip()):
            raise _fail(what, "url", f"must be nats://host:port (or tls://...), got {url!r}")
    return value


def check_name(what: str, key: str, value: object) -> str:
    """A JetStream stream or consumer name."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _fail(what, key, f"must be 1 to 200 letters, digits, '_' or '-', got {value!r}")
    return value


def check_int(what: str, key: str, value: object, *, minimum: int = 1) -> int:
    """An int >= ``minimum`` (or its decimal text)."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(what, key, f"must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(what: str, key: str, value: object) -> float:
    """A positive number of seconds (or its text)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10**7:
        raise _fail(what, key, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def check_flag(what: str, key: str, value: object) -> bool:
    """A bool (or ``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    if not isinstance(value, bool):
        raise _fail(what, key, f"must be true or false, got {value!r}")
    return value


def check_choice(what: str, key: str, value: object, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise _fail(what, key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_no_more(what: str, options: dict[str, object], takes: tuple[str, ...]) -> None:
    """Refuse options nobody reads (a typo must not be ignored)."""
    if options:
        unknown = sorted(options)[0]
        raise ConfigError(
            f"{what}: no option {unknown!r} (it takes {', '.join(takes)})", key=unknown
        )
