"""Strict readers for snapshot data: a malformed snapshot raises :class:`DecodeError`
naming the field, so the store falls back to replay instead of trusting it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chanlog.errors import DecodeError

__all__ = ["Reader", "amount_map", "load_amount_map"]


class Reader:
    """Typed access to one JSON object of a snapshot."""

    __slots__ = ("_data", "_where")

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise DecodeError(f"{where}: expected an object, got {type(data).__name__}", path=where)
        self._data = data
        self._where = where

    def _get(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise DecodeError(
                f"{self._where}.{key}: missing", path=f"{self._where}.{key}"
            ) from None

    def _fail(self, key: str, expected: str, value: Any) -> DecodeError:
        return DecodeError(
            f"{self._where}.{key}: expected {expected}, got {value!r}", path=f"{self._where}.{key}"
        )

    def uint(self, key: str) -> int:
        """A non-negative int."""
        value = self._get(key)
        if type(value) is not int or value < 0:
            raise self._fail(key, "a non-negative int", value)
        return value

    def opt_uint(self, key: str) -> int | None:
        """A non-negative int or null."""
        return None if self._get(key) is None else self.uint(key)

    def text(self, key: str) -> str:
        """A string."""
        value = self._get(key)
        if type(value) is not str:
            raise self._fail(key, "a string", value)
        return value

    def opt_text(self, key: str) -> str | None:
        """A string or null."""
        return None if self._get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        """A boolean."""
        value = self._get(key)
        if type(value) is not bool:
            raise self._fail(key, "a boolean", value)
        return value

    def opt_flag(self, key: str) -> bool | None:
        """A boolean or null."""
        return None if self._get(key) is None else self.flag(key)

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings."""
        value = self._get(key)
        if not isinstance(value, list) or not all(type(item) is str for item in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def opt_texts(self, key: str) -> tuple[str, ...] | None:
        """A list of strings or null."""
        return None if self._get(key) is None else self.texts(key)

    def raw(self, key: str) -> Any:
        """The value as stored."""
        return self._get(key)

    def amounts(self, key: str) -> dict[str, int]:
        """An object of decimal-string amounts."""
        return load_amount_map(self._get(key), f"{self._where}.{key}")


def amount_map(amounts: Mapping[str, int]) -> dict[str, str]:
    """Amounts as decimal strings (JSON cannot hold 256-bit ints faithfully)."""
    return {key: str(value) for key, value in sorted(amounts.items())}


def load_amount_map(value: Any, where: str) -> dict[str, int]:
    """The inverse of :func:`amount_map`."""
    if not isinstance(value, Mapping):
        raise DecodeError(f"{where}: expected an object of amounts", path=where)
    result: dict[str, int] = {}
    for key, raw in value.items():
        if type(raw) is not str or not raw.isdigit():
            raise DecodeError(f"{where}.{key}: expected a decimal string, got {raw!r}", path=where)
        result[str(key)] = int(raw)
    return result
