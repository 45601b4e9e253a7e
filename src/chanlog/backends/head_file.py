"""The head witness: a tiny file beside a database that remembers a head of its log
(:class:`~chanlog.backends.capabilities.RemembersHead`).

A log whose head is derived from its last row (SQLite file format 2, ADR 0018) still
verifies after someone deletes its last rows: every remaining record is intact. The witness
is kept outside the database, so an edit of the database's rows (or a database restored
from an older copy) does not reach it, and a log that no longer reaches the remembered
head, or reaches it with another chain hash, is shown to have lost records.

The file (``<database>-head``, e.g. ``node.db-head``) is four lines of ASCII, readable with
``cat``::

    chanlog-head 1
    length 1234
    chain_hash 0x<64 hex digits>
    checksum <sha256 of the three lines above, hex>

It is replaced atomically (temporary file, fsync, rename, directory fsync), so a crash
leaves the old witness or the new one. The checksum catches a damaged file: it is an
:class:`~chanlog.errors.IntegrityError` naming the file, never a head read wrongly.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from chanlog.backends.files import replace_atomically
from chanlog.errors import IntegrityError, StorageError
from chanlog.records import Head

__all__ = ["HEAD_FILE_SUFFIX", "MAGIC", "HeadFile", "decode_head", "encode_head"]

HEAD_FILE_SUFFIX = "-head"
"""Appended to the database's file name to name its witness (like SQLite's ``-wal``)."""

MAGIC = "chanlog-head 1"
"""The first line of a witness file: what it is, and the version of its format."""

_MAX_SIZE = 4096  # a witness is about 200 bytes; anything far larger is not one
_BODY = re.compile(
    rb"chanlog-head 1\nlength (?P<length>0|[1-9][0-9]{0,18})\n"
    rb"chain_hash 0x(?P<chain>[0-9a-f]{64})\n"
)
_CHECKSUM = re.compile(rb"checksum (?P<sum>[0-9a-f]{64})\n")


def encode_head(head: Head) -> bytes:
    """The bytes of a witness file remembering ``head``."""
    body = f"{MAGIC}\nlength {head.length}\nchain_hash 0x{head.chain_hash.hex()}\n".encode()
    return body + b"checksum " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def decode_head(data: bytes, where: Path) -> Head:
    """The head a witness file's bytes remember.

    Raises:
        IntegrityError: the bytes are not a whole, undamaged witness; the message names
            ``where``. (The error's ``offset`` is 0: a witness is about no one record.)
    """
    body = _BODY.match(data)
    if body is None:
        raise _damaged(where, "it does not have the witness's lines and fields")
    checksum = _CHECKSUM.fullmatch(data, body.end())
    if checksum is None:
        raise _damaged(where, "its checksum line is missing or malformed")
    if hashlib.sha256(body.group(0)).hexdigest().encode() != checksum["sum"]:
        raise _damaged(where, "its checksum does not match its contents")
    return Head(int(body["length"]), bytes.fromhex(body["chain"].decode()))


def _damaged(where: Path, problem: str) -> IntegrityError:
    return IntegrityError(
        f"{where}: damaged head witness ({problem}); it was changed outside chanlog or cut "
        "short. Check the log with `chanlog verify`; delete the file to stop comparing the "
        "log with it",
        offset=0,
    )


class HeadFile:
    """The witness file of one database.

    Args:
        database: the database file; the witness is ``<database>-head`` beside it.
    """

    __slots__ = ("path",)

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + HEAD_FILE_SUFFIX)
        """Where the witness lives."""

    def read(self) -> Head | None:
        """The remembered head, or ``None`` when there is no witness file.

        Raises:
            IntegrityError: the file is damaged (see :func:`decode_head`).
            StorageError: the file exists but cannot be read (permissions, a directory).
        """
        try:
            with self.path.open("rb") as handle:
                data = handle.read(_MAX_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot read the head witness: {exc}") from exc
        if len(data) > _MAX_SIZE:
            raise _damaged(self.path, f"it is larger than {_MAX_SIZE} bytes")
        return decode_head(data, self.path)

    def write(self, head: Head) -> None:
        """Replace the witness with one remembering ``head``, atomically and durably.

        Raises:
            StorageError: the file cannot be written (the old witness stays as it was).
        """
        try:
            replace_atomically(self.path, encode_head(head))
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write the head witness: {exc}") from exc

    def __repr__(self) -> str:
        return f"<HeadFile {str(self.path)!r}>"
