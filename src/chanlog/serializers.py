"""Serializers: how a backend stores an event's payload.

Whatever the serializer, the event id is always defined on canonical JSON; a serializer only
decides the bytes at rest. The built-in ``json`` serializer stores the canonical JSON itself,
so the store reuses the bytes it already hashed and ``verify()`` can hash stored bytes as-is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from chanlog.errors import DecodeError, InvalidArgument

__all__ = ["JsonSerializer", "Serializer", "resolve_serializer"]


class Serializer(Protocol):
    """Turns a payload dict (as :func:`chanlog.codec.to_payload` gives it) into bytes and back."""

    name: str
    """The registered name, selected by ``serializer = "..."`` in chanlog.toml."""

    canonical: bool
    """True when ``dumps`` returns the canonical JSON bytes (lets the store skip a re-encode)."""

    def dumps(self, payload: dict[str, Any]) -> bytes:
        """Serialize a payload dict."""
        ...

    def loads(self, data: bytes) -> dict[str, Any]:
        """Parse bytes written by :meth:`dumps`; raise :class:`~chanlog.errors.DecodeError`."""
        ...


class JsonSerializer:
    """Canonical JSON at rest (the default)."""

    name = "json"
    canonical = True

    def dumps(self, payload: dict[str, Any]) -> bytes:
        return memoryview(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).tobytes()

    def loads(self, data: bytes) -> dict[str, Any]:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"stored payload is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise DecodeError(f"stored payload is not a JSON object: {type(value).__name__}")
        return value


def resolve_serializer(
    value: Serializer | str | None, lookup: Callable[[str, str], Any]
) -> Serializer:
    """``value`` itself, or the serializer registered under that name (``None``: ``"json"``),
    found with a plugin host's ``lookup``.

    Raises:
        InvalidArgument: ``value`` is neither a name nor has ``dumps`` and ``loads``.
    """
    if value is None or isinstance(value, str):
        instance: Serializer = lookup("serializers", value or "json")()
        return instance
    if not (callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None))):
        raise InvalidArgument(
            f"serializer must be a serializer name or have dumps() and loads(), got {value!r}"
        )
    return value
