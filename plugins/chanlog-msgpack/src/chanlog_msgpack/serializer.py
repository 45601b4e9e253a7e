"""The msgpack serializer: a payload dict to msgpack bytes and back, strictly."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from chanlog.errors import DecodeError, InvalidEvent

__all__ = ["MsgpackSerializer"]


class MsgpackSerializer:
    """Payloads at rest as msgpack (``serializer = "msgpack"``).

    Payloads are what :func:`chanlog.codec.to_payload` returns: string keys, strings, ints
    below 2**64 (amounts travel as decimal strings), bools and lists of strings, all of which
    msgpack holds exactly. ``canonical`` is ``False``: the store computes event ids from the
    canonical JSON itself, and ``verify()`` re-derives canonical JSON from what ``loads``
    returns, so a record altered at rest is still detected.
    """

    name = "msgpack"
    canonical = False

    def dumps(self, payload: dict[str, Any]) -> bytes:
        """Pack a payload dict; a value msgpack cannot hold is an :class:`InvalidEvent`."""
        try:
            packed: bytes = msgpack.packb(payload, use_bin_type=True, strict_types=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidEvent(f"msgpack cannot store this payload: {exc}") from exc
        return packed

    def loads(self, data: bytes) -> dict[str, Any]:
        """Unpack bytes written by :meth:`dumps` into a payload dict.

        Raises:
            DecodeError: the bytes are not one msgpack map with string keys.
        """
        try:
            value = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise DecodeError(f"stored payload is not valid msgpack: {exc}") from exc
        if not isinstance(value, dict):
            raise DecodeError(f"stored payload is not a msgpack map: {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise DecodeError(f"stored payload has a non-string key: {key!r}")
        return value

    def __repr__(self) -> str:
        return "MsgpackSerializer()"
