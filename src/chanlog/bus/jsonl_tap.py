"""The ``jsonl`` handler: an audit tap that appends every record it is handed to a file,
one JSON object per line, in the order it is handed them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import orjson

from chanlog.errors import ConfigError, DecodeError, StorageError
from chanlog.records import RecordedEvent

__all__ = ["JsonlTap"]

_RECORD_START = b'{"offset":'
"""How every line this tap writes begins."""


class JsonlTap:
    """Writes ``{"offset", "event_id", "chain_hash", "type", "payload"}`` per record.

    It tracks its own position (:class:`~chanlog.bus.handlers.TracksPosition`): the offset
    after the file's last line, so after a crash the runner resumes right after what the
    file already holds, and no record is written twice (a torn last line is cut off).

    Args:
        path: the file (created if missing, appended to otherwise).
        fsync: make every line durable before the record counts as handled.

    Raises:
        StorageError: the file cannot be opened (a missing directory, a directory in its
            place, no permission), naming it.
    """

    def __init__(
        self, *, path: str | os.PathLike[str], fsync: bool = False, **options: Any
    ) -> None:
        if options:
            raise ConfigError(
                f"the jsonl handler has no option {sorted(options)[0]!r} (it takes path, fsync)",
                key=sorted(options)[0],
            )
        if not isinstance(fsync, bool):
            raise ConfigError(f"jsonl: fsync must be true or false, got {fsync!r}", key="fsync")
        self.path = Path(path)
        self._fsync = fsync
        try:
            self._next = self._recover()
            self._file: IO[bytes] = self.path.open("ab")
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot open the audit file: {exc.strerror or exc}"
            ) from exc

    def _recover(self) -> int | None:
        """The offset after the last complete line; cut a torn last line off, once the file
        is known to be this tap's (a ``path`` naming another file, such as the log's own,
        must not lose its tail)."""
        if not self.path.exists():
            return None
        with self.path.open("rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return None
            start = max(0, size - 65536)
            file.seek(start)
            tail = file.read()
            cut = len(tail) if tail.endswith(b"\n") else tail.rfind(b"\n") + 1
            lines = tail[:cut].splitlines()
            if lines:
                after = self._offset_after(lines[-1])
            elif start == 0 and tail.startswith(_RECORD_START):  # its first write, torn
                after = None
            else:
                raise DecodeError(
                    f"{self.path}: not a file of this tap (it holds no record line); "
                    "nothing of it was changed"
                )
            if cut < len(tail):  # a write cut short by a crash
                file.truncate(start + cut)
            return after

    def _offset_after(self, line: bytes) -> int:
        try:
            offset = orjson.loads(line)["offset"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise DecodeError(
                f"{self.path}: not a file of this tap (the last line is not a record of this "
                "tap); nothing of it was changed"
            ) from exc
        if type(offset) is not int:
            raise DecodeError(f"{self.path}: the last line's offset is not an int")
        return offset + 1

    def position(self, consumer: str) -> int | None:
        """The offset after the last record in the file."""
        del consumer
        return self._next

    def __call__(self, record: RecordedEvent) -> None:
        line = orjson.dumps(
            {
                "offset": record.offset,
                "event_id": record.event_id,
                "chain_hash": record.chain_hash,
                "type": record.event_type,
                "payload": orjson.Fragment(record.event.canonical_json()),
            }
        )
        self._file.write(line + b"\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._next = max(self._next or 0, record.offset + 1)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
