"""Which serializer wrote a log: recorded by its first writer, checked by every store that
opens it (ADR 0031).

Payloads at rest are the serializer's bytes, so a store that reads them with another
serializer sees nothing but undecodable records: an integrity failure at offset 0 that says
the log was changed outside chanlog, when it was only opened with the wrong setting. A
backend that :class:`~chanlog.backends.capabilities.RecordsSerializer` keeps the name, and a
mismatch is a :class:`~chanlog.errors.ConfigError` naming both serializers.
"""

from __future__ import annotations

from chanlog.backends.base import Backend
from chanlog.backends.capabilities import FileBacked, MayBeReadOnly, RecordsSerializer
from chanlog.errors import ConfigError, DecodeError
from chanlog.serializers import Serializer

__all__ = ["check_serializer"]


def check_serializer(backend: Backend, serializer: Serializer, *, writable: bool) -> None:
    """Refuse to read or write the log of ``backend`` with a serializer other than the one
    it records; a ``writable`` store records its own where none is recorded.

    A log written before chanlog recorded its serializer is recorded by its first writer,
    once the writer's serializer has decoded the log's first payload (so a wrong setting is
    refused before it is made permanent). A read-only store records nothing and checks
    nothing on such a log: a wrong serializer then shows as payloads that do not decode.

    Raises:
        ConfigError: the log records another serializer, or (recording on an older log) its
            first payload does not decode with this one; the message names both.
        StorageError: the record could not be read or written.
    """
    if not isinstance(backend, RecordsSerializer):
        return
    name = serializer.name
    recorded = backend.recorded_serializer()
    if recorded is None:
        if not writable or (isinstance(backend, MayBeReadOnly) and backend.read_only):
            return
        _first_payload_decodes(backend, serializer)
        recorded = backend.record_serializer(name)
    if recorded != name:
        raise ConfigError(
            f"the {_log(backend)} was written with serializer {recorded!r}, and this store is "
            f"configured with serializer {name!r}: set serializer = {recorded!r} to open it",
            key="serializer",
        )


def _first_payload_decodes(backend: Backend, serializer: Serializer) -> None:
    """Refuse to record ``serializer`` for a log whose first payload it cannot read."""
    first = next(backend.read(0, 1), None)
    if first is None:
        return
    try:
        serializer.loads(first.payload)
    except DecodeError as exc:
        raise ConfigError(
            f"the {_log(backend)} records no serializer (it was written before chanlog "
            f"recorded one), and its first payload does not decode with serializer "
            f"{serializer.name!r} ({exc}): open it with the serializer that wrote it",
            key="serializer",
        ) from exc


def _log(backend: Backend) -> str:
    where = f" {backend.path}" if isinstance(backend, FileBacked) else ""
    return f"{backend.name} log{where}"
