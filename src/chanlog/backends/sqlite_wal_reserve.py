"""The write-ahead log grown ahead of its commits, with zeros (ADR 0037).

With ``durability="full"`` every commit ends in an fdatasync of the ``-wal`` file. While
that file grows, each commit also extends it, and the fdatasync then has to journal the new
blocks and the new size as well as write the frames: on the benchmark machines such a
commit costs 1.5x to 1.8x one that overwrites blocks the file already has. SQLite reuses its
log from the start after each checkpoint and never shrinks it (chanlog sets no
``journal_size_limit``), so only the commits until the log first reaches its checkpoint
size pay, but they are every commit of the first few thousand after each open: the log is
deleted when the last connection closes.

So the writer grows the log itself, ahead of SQLite, the way PostgreSQL zero-fills each of
its WAL segments before it writes there: once the log holds :data:`START` bytes, each time
SQLite writes past the reserved end, the file is extended with zeros (by as many bytes as it
holds, :data:`MOST_AT_ONCE` at most) and the new blocks are synced, up to the size SQLite
reaches between two checkpoints. The log then never grows by more than the file already
holds, and a writer that commits rarely never reserves anything.

Why this is safe:

* zeros are written only past the file's end, and only while this connection holds SQLite's
  writer lock (inside ``BEGIN IMMEDIATE``, before the transaction writes anything): SQLite
  appends frames only under that lock, and shrinks the log only under it;
* SQLite, and chanlog's own reader of the log (:func:`~chanlog.backends.sqlite_wal.wal_holds`),
  read a log from its start up to the first frame whose salts or cumulative checksum are
  wrong; a frame of zeros has neither, just as the stale frames past the end of a reused log
  have the salts of an older generation. A crash while zeros are being written leaves such a
  tail, nothing else;
* the lock bytes of WAL mode live in the ``-shm`` file, so the descriptor kept on the log
  cannot release one of SQLite's locks when it closes.

A reservation that fails (a full disk) gives its bytes back and turns reserving off for the
connection: the append goes on, exactly as without a reserve.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["MOST_AT_ONCE", "START", "WalReserve", "fill_with_zeros", "log_limit"]

START = 256 * 1024
"""The log's size (bytes) from which the writer reserves ahead of it: about 30 single
commits, so a writer that appends a handful of events never writes a reserve."""

MOST_AT_ONCE = 4 * 1024 * 1024
"""The most bytes one reservation writes (and syncs), which bounds the extra latency of the
commit that makes it."""

_FRAME_HEADER = 24
_LOG_HEADER = 32
_ZEROS = memoryview(bytes(1024 * 1024))

_sync = getattr(os, "fdatasync", os.fsync)


def log_limit(checkpoint_pages: int, page_size: int) -> int:
    """The size a log reaches between two checkpoints (its header and ``checkpoint_pages``
    frames of ``page_size`` pages): the most the writer reserves."""
    return _LOG_HEADER + checkpoint_pages * (_FRAME_HEADER + page_size)


def fill_with_zeros(descriptor: int, start: int, end: int) -> None:
    """Write zeros over bytes ``[start, end)`` of the file open as ``descriptor`` and sync
    them (``fdatasync``: the new size and blocks are on disk once it returns).

    Raises:
        OSError: the write or the sync failed (some zeros may have been written).
    """
    position = start
    while position < end:
        position += os.pwrite(descriptor, _ZEROS[: end - position], position)
    _sync(descriptor)


class WalReserve:
    """Keeps the write-ahead log of one writing connection reserved ahead of its frames.

    Args:
        database: the database file (its log is ``<database>-wal``).
        limit: the most the log is grown to (:func:`log_limit`).

    Call :meth:`extend` under SQLite's writer lock, before the transaction writes.
    """

    __slots__ = ("_descriptor", "_limit", "_log", "_reserved", "enabled")

    def __init__(self, database: Path, limit: int) -> None:
        # Resolved now, as SQLite resolved it when the connection opened (symbolic links
        # included): a later change of directory must not point the reserve at another log.
        self._log = f"{os.path.realpath(database)}-wal"
        self._limit = limit
        self._descriptor = -1
        self._reserved = 0
        self.enabled = hasattr(os, "pwrite")
        """False once a reservation failed (or on a system without ``os.pwrite``)."""

    @property
    def reserved(self) -> int:
        """The size the log was last grown to by this reserve (0: not yet)."""
        return self._reserved

    def extend(self) -> None:
        """Grow the log with zeros when SQLite wrote past the reserved end (or shrank it).
        Never raises: a reservation that fails turns the reserve off."""
        if not self.enabled:
            return
        descriptor = self._descriptor
        try:
            if descriptor < 0:
                descriptor = self._descriptor = os.open(self._log, os.O_WRONLY | os.O_CLOEXEC)
            # The size by seeking, not by fstat: on Linux 6.13 and later a stat marks the
            # file's times as seen, so SQLite's next write stamps them anew, which dirties the
            # inode and costs the commit's fdatasync ~40% (ADR 0037).
            size = os.lseek(descriptor, 0, os.SEEK_END)
        except FileNotFoundError:  # no log yet: SQLite creates it with the first write
            return
        except OSError:  # a log this process may not write: never try again
            self.enabled = False
            return
        if size == self._reserved:
            return
        if size < START or size >= self._limit:
            self._reserved = size  # too small to reserve for, or full grown
            return
        target = min(size + min(size, MOST_AT_ONCE), self._limit)
        try:
            fill_with_zeros(descriptor, size, target)
        except OSError:
            self._give_back(descriptor, size)
            return
        self._reserved = target

    def close(self) -> None:
        """Close the descriptor kept on the log (idempotent)."""
        descriptor, self._descriptor = self._descriptor, -1
        self._reserved = 0
        if descriptor >= 0:
            os.close(descriptor)

    def _give_back(self, descriptor: int, size: int) -> None:
        """After a failed reservation: cut the log back to ``size`` (what SQLite wrote) and
        stop reserving for this connection."""
        self.enabled = False
        with contextlib.suppress(OSError):  # zeros past SQLite's frames are harmless, only wasted
            os.ftruncate(descriptor, size)
        self.close()
