"""The one rule for a public argument that takes several things (a batch of events, offsets,
projection names, subject patterns, witnesses, what a handler returns): any iterable but a
string or bytes, which iterate as characters, read once, since a backend or a second check
may walk it again and a generator gives its items only once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from chanlog.errors import InvalidArgument

__all__ = ["items_once"]


def items_once(
    value: object, refusal: Callable[[], str], *, single: tuple[type, ...] = ()
) -> list[Any]:
    """The items of ``value``, read once.

    Args:
        refusal: makes the message when ``value`` is not such a list (only then: these
            are hot paths, and a message quoting a large argument costs its ``repr``).
        single: types that iterate but stand for one thing (an event, an envelope).

    Raises:
        InvalidArgument: ``refusal()``: ``value`` is a string, bytes, one of ``single``, or
            not iterable.
    """
    if isinstance(value, (str, bytes, *single)) or not isinstance(value, Iterable):
        raise InvalidArgument(refusal())
    return list(value)
