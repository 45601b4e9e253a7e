"""The ``postgres`` backend's option checks: a bad option is a
:class:`~chanlog.errors.ConfigError` naming ``backend.<key>``, raised before connecting."""

from __future__ import annotations

from chanlog.errors import ConfigError

__all__ = [
    "DURABILITY_LEVELS",
    "OPTION_NAMES",
    "check_durability",
    "check_flag",
    "check_pool_size",
    "check_seconds",
]

DURABILITY_LEVELS = {"full": "on", "normal": "off"}
"""``durability`` option → PostgreSQL ``synchronous_commit`` of this backend's sessions."""

OPTION_NAMES = (
    "dsn",
    "schema",
    "durability",
    "pool_size",
    "connect_timeout",
    "lock_timeout",
    "pool_timeout",
    "read_only",
    "create",
)
"""Every option the ``postgres`` backend takes, in the order its messages list them."""


def check_durability(value: object) -> str:
    """``value`` if it is a key of :data:`DURABILITY_LEVELS`."""
    if not isinstance(value, str) or value not in DURABILITY_LEVELS:
        raise ConfigError(
            f"postgres backend: durability must be 'full' or 'normal', got {value!r}",
            key="backend.durability",
        )
    return value


def check_pool_size(value: object) -> int:
    """``value`` if it is an int >= 2 (a writer folding other processes' records reads
    while it holds the write lock)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(
            f"postgres backend: pool_size must be an int >= 2, got {value!r}",
            key="backend.pool_size",
        )
    return value


def check_seconds(name: str, value: object) -> float:
    """``value`` as a float, if it is a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"postgres backend: {name} must be a positive number of seconds, got {value!r}",
            key=f"backend.{name}",
        )
    return float(value)


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"postgres backend: {name} must be true or false, got {value!r}",
            key=f"backend.{name}",
        )
    return value
