"""Snapshot policies: when the store takes a snapshot after a commit.

A policy is asked once per committed write, so it must be cheap (a comparison). Policies
are plugins: ``chanlog_register_snapshot_policies(register)`` registers a factory that
takes the policy's options as keyword arguments (``[snapshots]`` in chanlog.toml).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from chanlog.errors import ConfigError, InvalidArgument

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_SNAPSHOT_EVERY",
    "EveryNEvents",
    "IncrementalSnapshots",
    "Never",
    "PlansSnapshots",
    "RetainsSnapshots",
    "SnapshotPolicy",
    "resolve_policy",
    "retained",
]

DEFAULT_SNAPSHOT_EVERY = 1000
"""The default ``n`` of ``every-n-events``."""
DEFAULT_KEEP = 2
"""The default ``keep`` of ``every-n-events``: the latest snapshots always kept."""


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


@runtime_checkable
class RetainsSnapshots(Protocol):
    """An optional capability of a :class:`SnapshotPolicy`: which stored snapshots to keep.

    After every snapshot the store takes, it deletes the stored snapshots the policy does
    not retain (where the backend
    :class:`~chanlog.backends.capabilities.ManagesSnapshots`); ``chanlog snapshots prune``
    applies it to an existing log. A deleted snapshot only means reconstruction of an old
    offset starts further back (ADR 0030)."""

    def retain(self, offsets: Sequence[int]) -> set[int]:
        """Of the stored snapshots' ``offsets`` (ascending), those to keep."""
        ...


@runtime_checkable
class IncrementalSnapshots(Protocol):
    """An optional capability of a :class:`SnapshotPolicy`: when :attr:`incremental` is
    true, a snapshot the store takes at the end of the log holds only the entities that
    changed since the last one it took, and reads the others through it (ADR 0036).
    Pruning never deletes a snapshot that a kept one is taken on."""

    incremental: bool
    """Take incremental snapshots (else every snapshot is whole)."""


def retained(offsets: Sequence[int], keep: int, spacing: int) -> set[int]:
    """The latest ``keep`` of ``offsets`` (ascending), and a thinned set of the older ones:
    about one per doubling of age, so ``keep + log2(length / spacing)`` snapshots however
    long the log. ``keep = 0`` keeps everything.

    A snapshot's number is ``offset // spacing`` and its age the latest number minus its
    own; an older snapshot is kept when its number is a multiple of the largest power of
    two not above its age, and no newer kept snapshot has its number. Ages only grow, so a
    snapshot dropped once would be dropped at every later prune too: thinning never wants
    back what it deleted."""
    if keep == 0 or len(offsets) <= keep:
        return set(offsets)
    kept = set(offsets[-keep:])
    latest = offsets[-1] // spacing
    numbers = {offset // spacing for offset in kept}
    for offset in reversed(offsets[:-keep]):
        number = offset // spacing
        age = max(latest - number, 1)
        # One per number (the newest): snapshots taken closer together than ``spacing``.
        if number not in numbers and number % (1 << (age.bit_length() - 1)) == 0:
            numbers.add(number)
            kept.add(offset)
    return kept


def _reject_unknown(policy: str, options: dict[str, Any]) -> None:
    if options:
        unknown = sorted(options)[0]
        raise ConfigError(f"snapshot policy {policy!r} has no option {unknown!r}", key=unknown)


class EveryNEvents:
    """Snapshot once ``n`` events were appended since the latest snapshot (or since the
    start of the log). ``snapshot-created`` events count like any other.

    Args:
        n: events between snapshots (an int >= 1; default 1000).
        keep: the latest snapshots kept (default 2; ``0``: keep every snapshot); older ones
            are thinned to about one per doubling of age (:func:`retained`).
        incremental: take incremental snapshots (default true;
            :class:`IncrementalSnapshots`).
    """

    name = "every-n-events"
    accepted_options = ("n", "keep", "incremental")
    """What a configuration's ``[snapshots]`` table may set, checked as it is read
    (:func:`~chanlog.factories.accepted_options`)."""

    def __init__(
        self,
        n: int = DEFAULT_SNAPSHOT_EVERY,
        keep: int = DEFAULT_KEEP,
        incremental: bool = True,
        **options: Any,
    ) -> None:
        _reject_unknown(self.name, options)
        if type(n) is not int or n < 1:
            raise ConfigError(f"every-n-events: n must be an int >= 1, got {n!r}", key="n")
        if type(keep) is not int or keep < 0:
            raise ConfigError(
                f"every-n-events: keep must be an int >= 0 (0: keep all), got {keep!r}",
                key="keep",
            )
        if type(incremental) is not bool:
            raise ConfigError(
                f"every-n-events: incremental must be true or false, got {incremental!r}",
                key="incremental",
            )
        self.n = n
        self.keep = keep
        self.incremental = incremental

    def retain(self, offsets: Sequence[int]) -> set[int]:
        """The latest ``keep``, and thinned older ones (:class:`RetainsSnapshots`)."""
        return retained(offsets, self.keep, self.n)

    def should_snapshot(self, *, length: int, last_snapshot_offset: int | None) -> bool:
        """True once ``n`` events follow the latest snapshot."""
        return length - (last_snapshot_offset or 0) >= self.n

    def next_snapshot_at(self, *, last_snapshot_offset: int | None) -> int:
        """``n`` events past the latest snapshot (:class:`PlansSnapshots`)."""
        return (last_snapshot_offset or 0) + self.n

    def __repr__(self) -> str:
        return f"EveryNEvents(n={self.n}, keep={self.keep}, incremental={self.incremental})"


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
