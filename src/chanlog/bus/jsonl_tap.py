"""The ``jsonl`` handler: an audit tap that appends every record it is handed to a file,
one JSON object per line, in the order it is handed them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import orjson

from chanlog.errors import ConfigError, DecodeError, IntegrityError, StorageError
from chanlog.folded_chain import another_record_at
from chanlog.records import RecordedEvent

__all__ = ["JsonlTap"]

_RECORD_START = b'{"offset":'
"""How every line this tap writes begins."""

_HEX = b"\x01"
_HEAD = b',"event_id":"0x' + _HEX * 64 + b'","chain_hash":"0x' + _HEX * 64 + b'","type":"'
"""What follows the offset's digits at the start of every line this tap writes (``_HEX``:
a hex digit)."""

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

_STEP = 65536
"""How many bytes the search for a line's start reads at a time, back from the end."""


def _torn_first_write(head: bytes) -> bool:
    """Whether ``head``, the start of a file holding no newline, is what this tap's first
    write leaves when a crash cuts it short: a record line's start as far as it goes."""
    if len(head) < len(_RECORD_START):
        return _RECORD_START.startswith(head)
    rest = head[len(_RECORD_START) :]
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    if not 0 < digits <= 20:  # an offset fits 64 bits
        return rest == b""
    rest = rest[digits : digits + len(_HEAD)]
    return all(
        byte in _HEX_DIGITS if want == _HEX[0] else byte == want
        for byte, want in zip(rest, _HEAD, strict=False)
    )


def _line_start(file: IO[bytes], end: int) -> int:
    """The position after the last newline before ``end`` (0 if there is none), read back
    from ``end`` a step at a time."""
    stop = end
    while stop > 0:
        start = max(0, stop - _STEP)
        file.seek(start)
        found = file.read(stop - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        stop = start
    return 0


class JsonlTap:
    """Writes ``{"offset", "event_id", "chain_hash", "type", "payload"}`` per record.

    It tracks its own position (:class:`~chanlog.bus.handlers.TracksPosition`): the offset
    after the file's last line, so after a crash the runner resumes right after what the
    file already holds, and no record is written twice (a torn last line is cut off). It
    goes on only from a file whose last line is this log's record at its offset
    (:meth:`bind`).

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
        self._last_chain_hash: str | None = None
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
        must not lose its tail).

        A file of this tap begins with a record line, which refuses most foreign files at
        the cost of one small read; then the last line is found by reading back from the end
        in steps of :data:`_STEP`: one step for lines of common length, as many as the
        longest of the last two lines needs otherwise."""
        if not self.path.exists():
            return None
        with self.path.open("rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return None
            file.seek(0)
            head = file.read(len(_RECORD_START) + 20 + len(_HEAD))
            if not (head.startswith(_RECORD_START) or _RECORD_START.startswith(head)):
                raise DecodeError(
                    f"{self.path}: not a file of this tap (it does not begin with a record "
                    "line); nothing of it was changed"
                )
            cut = _line_start(file, size)  # the end of the last complete line
            if cut == 0:  # no complete line: its first write, torn, or another file
                if not _torn_first_write(head):
                    raise DecodeError(
                        f"{self.path}: not a file of this tap (it holds no record line, and "
                        "does not begin as one); nothing of it was changed"
                    )
                after = None
            else:
                begin = _line_start(file, cut - 1)
                file.seek(begin)
                after = self._offset_after(file.read(cut - 1 - begin))
            if cut < size:  # a write cut short by a crash
                file.truncate(cut)
            return after

    def _offset_after(self, line: bytes) -> int:
        """The offset after ``line``'s, the file's last line; keeps its chain hash."""
        try:
            parsed = orjson.loads(line)
            offset, chain_hash = parsed["offset"], parsed["chain_hash"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise DecodeError(
                f"{self.path}: not a file of this tap (the last line is not a record of this "
                "tap); nothing of it was changed"
            ) from exc
        if type(offset) is not int:
            raise DecodeError(f"{self.path}: the last line's offset is not an int")
        if type(chain_hash) is not str:
            raise DecodeError(f"{self.path}: the last line's chain_hash is not a string")
        self._last_chain_hash = chain_hash.lower()
        return offset + 1

    def bind(self, store: Any, consumer: str) -> None:
        """Check, before anything is written, that the file's last line is the log's record
        at its offset, as the read model and the NATS relay do (ADR 0047, ADR 0049).

        Raises:
            IntegrityError: the log's record at that offset is another (its chain hash
                differs): the file is another log's tap, or this log lost records the file
                holds and others took their offsets. Lines cannot be taken back: point the
                tap at a new file and reset the consumer. A file that reaches past the log's
                end is refused by the runner.
        """
        if self._next is None or self._last_chain_hash is None:
            return
        offset = self._next - 1
        try:
            last = bytes.fromhex(self._last_chain_hash.removeprefix("0x"))
        except ValueError:  # not hex: no record of any log has it
            last = b""
        if another_record_at(store.backend, offset, last):
            raise IntegrityError(
                f"{self.path}: the file's last line is the record at offset {offset}, but the "
                "log's record there is another (its chain hash differs): the file is another "
                "log's tap, or this log lost records the file holds; nothing of it was "
                "changed. Point the tap at a new file and reset the consumer (chanlog "
                f"consumers reset {consumer} --to 0)",
                offset=offset,
            )

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
