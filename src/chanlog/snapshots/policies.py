"""Snapshot policies: when the store takes a snapshot after a commit.

A policy is asked once per committed write, so it must be cheap (a comparison). Policies
are plugins: ``chanlog_register_snapshot_policies(register)`` registers a factory that
takes the policy's options as keyword arguments (``[snapshots]`` in chanlog.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from chanlog.errors import ConfigError, InvalidArgument

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "EveryNEvents",
    "Never",
    "PlansSnapshots",
    "SnapshotPolicy",
    "resolve_policy",
]

DEFAULT_SNAPSHOT_EVERY = 1000
"""The default ``n`` of ``every-n-events``."""


@runtime_checkable
class SnapshotPolicy(Protocol):
    """Decides, after each commit, whether the store should snapshot its projections."""

    name: str
    """The registered name."""

    def should_snapshot(self, *, length: int, last_snapshot_offset: int | None) -> bool:
        """Whether to snapshot now that the log holds ``length`` events; the latest
        snapshot covers ``[0, last_snapshot_offset)`` (``None``: there is none)."""
        ...


@runtime_checkable
class PlansSnapshots(Protocol):
    """An optional capability of a :class:`SnapshotPolicy` whose answer depends only on
    the log's length: it names the length at which the next snapshot is due, so the store
    compares a number after each commit instead of calling the policy (it asks again only
    when a new snapshot is announced). ``should_snapshot`` must agree with it."""

    def next_snapshot_at(self, *, last_snapshot_offset: int | None) -> int | None:
        """The log length from which :meth:`SnapshotPolicy.should_snapshot` is true, the
        latest snapshot covering ``[0, last_snapshot_offset)``; ``None``: never."""
        ...


def _reject_unknown(policy: str, options: dict[str, Any]) -> None:
    if options:
        unknown = sorted(options)[0]
        raise ConfigError(f"snapshot policy {policy!r} has no option {unknown!r}", key=unknown)


class EveryNEvents:
    """Snapshot once ``n`` events were appended since the latest snapshot (or since the
    start of the log). ``snapshot-created`` events count like any other.

    Args:
        n: events between snapshots (an int >= 1; default 1000).
    """

    name = "every-n-events"

    def __init__(self, n: int = DEFAULT_SNAPSHOT_EVERY, **options: Any) -> None:
        _reject_unknown(self.name, options)
        if type(n) is not int or n < 1:
            raise ConfigError(f"every-n-events: n must be an int >= 1, got {n!r}", key="n")
        self.n = n

    def should_snapshot(self, *, length: int, last_snapshot_offset: int | None) -> bool:
        """True once ``n`` events follow the latest snapshot."""
        return length - (last_snapshot_offset or 0) >= self.n

    def next_snapshot_at(self, *, last_snapshot_offset: int | None) -> int:
        """``n`` events past the latest snapshot (:class:`PlansSnapshots`)."""
        return (last_snapshot_offset or 0) + self.n

    def __repr__(self) -> str:
        return f"EveryNEvents(n={self.n})"


class Never:
    """Never snapshot automatically (``store.snapshot()`` still works)."""

    name = "never"

    def __init__(self, **options: Any) -> None:
        _reject_unknown(self.name, options)

    def should_snapshot(self, *, length: int, last_snapshot_offset: int | None) -> bool:
        """Always False."""
        return False

    def next_snapshot_at(self, *, last_snapshot_offset: int | None) -> None:
        """Never (:class:`PlansSnapshots`)."""
        return

    def __repr__(self) -> str:
        return "Never()"


def resolve_policy(
    value: SnapshotPolicy | str | None, lookup: Callable[[str, str], Any]
) -> SnapshotPolicy:
    """``value`` itself, or the policy registered under that name (``None``: ``"never"``),
    found with a plugin host's ``lookup``.

    Raises:
        InvalidArgument: ``value`` is neither a name nor a :class:`SnapshotPolicy`.
    """
    if value is None or isinstance(value, str):
        instance: SnapshotPolicy = lookup("snapshot_policies", value or "never")()
        return instance
    if not isinstance(value, SnapshotPolicy):
        raise InvalidArgument(
            f"snapshot_policy must be a policy name or have should_snapshot(), got {value!r}"
        )
    return value
