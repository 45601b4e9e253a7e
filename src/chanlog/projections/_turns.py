"""An immutable turn → value map that a fold can extend without copying all of it.

A channel keeps the signatures of every turn at or above its supported turn; a channel
whose states are signed but not (yet) supported keeps them all. Copying a ``dict`` of every
turn per event made the fold quadratic in such a channel (a 1,000-turn replay copied half a
million entries). :class:`TurnMap` shares a large *base* dict between versions and copies
only a small dict of *recent* changes; once the recent part outgrows the square root of the
base, both are merged into a new base, so a change costs O(sqrt n) amortised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from math import isqrt
from typing import Any, Generic, TypeVar

__all__ = ["TurnMap"]

V = TypeVar("V")
_MIN_RECENT = 32
"""Recent changes kept apart before any merge: small maps never merge at all."""
_EMPTY: dict[Any, Any] = {}
"""Shared by every map without entries of one kind; never mutated."""
_ABSENT: Any = object()
_new = object.__new__


class TurnMap(Mapping[int, V], Generic[V]):
    """An immutable mapping from turn numbers to values, ordered like a ``dict`` that was
    updated in the same order. :meth:`set` and :meth:`from_turn` return new maps."""

    __slots__ = ("_base", "_recent", "_size")

    _base: dict[int, V]
    _recent: dict[int, V]
    _size: int

    def __init__(self, items: Mapping[int, V] | None = None) -> None:
        self._base = dict(items) if items else _EMPTY
        self._recent = _EMPTY
        self._size = len(self._base)

    def set(self, turn: int, value: V) -> TurnMap[V]:
        """A map with ``turn`` mapped to ``value`` (shares everything else with this one)."""
        base = self._base
        recent = self._recent
        new: TurnMap[V] = _new(TurnMap)
        new._size = self._size if turn in recent or turn in base else self._size + 1
        if len(recent) < _MIN_RECENT or turn in recent or len(recent) < isqrt(len(base)):
            changed = recent.copy()
            changed[turn] = value
            new._base = base
            new._recent = changed
        else:
            merged = base | recent
            merged[turn] = value
            new._base = merged
            new._recent = _EMPTY
        return new

    def from_turn(self, turn: int) -> TurnMap[V]:
        """A map of the entries at or above ``turn`` (what pruning keeps)."""
        base = self._base
        recent = self._recent
        entries = (base | recent if base else recent) if recent else base
        new: TurnMap[V] = _new(TurnMap)
        new._base = {each: value for each, value in entries.items() if each >= turn}
        new._recent = _EMPTY
        new._size = len(new._base)
        return new

    def __getitem__(self, turn: int) -> V:
        recent = self._recent
        if turn in recent:
            return recent[turn]
        return self._base[turn]

    def get(self, turn: int, default: Any = None) -> Any:
        """The value of ``turn``, or ``default``."""
        value = self._recent.get(turn, _ABSENT)
        if value is _ABSENT:
            return self._base.get(turn, default)
        return value

    def __contains__(self, turn: object) -> bool:
        return turn in self._recent or turn in self._base

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        recent = self._recent
        yield from self._base
        for turn in recent:
            if turn not in self._base:
                yield turn

    def items(self) -> Any:
        """``(turn, value)`` pairs, in ``dict`` order."""
        if not self._recent:
            return self._base.items()
        return (self._base | self._recent).items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TurnMap):
            if other._base is self._base and other._recent == self._recent:
                return True
            return dict(self.items()) == dict(other.items())
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TurnMap({dict(self.items())!r})"
