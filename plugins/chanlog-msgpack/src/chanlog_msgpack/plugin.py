"""The chanlog plugin module (entry point ``msgpack`` in the group ``chanlog``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog import hookimpl
from chanlog_msgpack.serializer import MsgpackSerializer

__all__ = ["chanlog_register_serializers"]


@hookimpl
def chanlog_register_serializers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register the ``msgpack`` serializer."""
    register(MsgpackSerializer.name, MsgpackSerializer)
