"""The raw-bytes check of a chanlog SQLite file before any connection touches it, and the
proof that a file shorter than its header says is a checkpoint caught in the middle
(ADR 0023), read from its write-ahead log.

A file is truncated when it is shorter than the page count in its header (or ends inside a
page) and its write-ahead log does not hold the missing pages. A checkpoint copies page 1,
which states the new page count, into the main file before the pages that grow it, so for
the milliseconds a checkpoint takes, and for good after a crash in them, a healthy file is
shorter than its header says; the pages it lacks are in the ``-wal`` file, which SQLite
reads. Such a file is accepted only when the log's valid frames (its salts, SQLite's
cumulative checksums, up to a commit frame) hold every missing page; the log is read with
plain file I/O, so a refused file still gets no side files. A file that looks truncated is
read again before it is refused, as a live writer may finish its checkpoint and reset the
log between reading the file and reading the log.

Everything here reads files with plain I/O: no SQLite connection, so no side files appear
next to a file that may not be chanlog's.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Literal

from chanlog.backends.sqlite_format import (
    APPLICATION_ID,
    SQLITE_HEADER_SIZE,
    SQLITE_MAGIC,
    check_version,
)
from chanlog.errors import StorageError

__all__ = [
    "RECHECKS",
    "check_file_start",
    "check_header",
    "frame_checksums",
    "read_start",
    "wal_checksum",
    "wal_holds",
]


def check_file_start(path: Path) -> None:
    """Refuse, from its raw bytes and without writing anything, a file that is not a whole
    chanlog database: empty, foreign, of a newer schema version, with a corrupt header, or
    truncated. The caller then confirms the rest (tables, format marker) through a
    read-only connection.

    A file shorter than its header says is refused as truncated unless the write-ahead log
    beside it holds every missing page (:func:`wal_holds`): a checkpoint writes page 1,
    which states the new page count, before the pages that grow the file, so a process
    killed then, or another process looking meanwhile, sees a healthy database cut short.
    When the log does not explain it, the file is read again: a live writer may have finished
    the checkpoint and reset its log between the two reads, and the file is refused only when
    it stays the same across the look at the log (or still moves after :data:`RECHECKS`
    looks).

    Raises:
        StorageError: naming the path and what is wrong with it.
    """
    header, size = read_start(path)
    for attempt in range(RECHECKS + 1):
        truncated = check_header(path, header, size)
        if truncated is None:
            return
        again = read_start(path)
        if again == (header, size) or attempt == RECHECKS:
            raise StorageError(truncated)
        header, size = again


RECHECKS = 5
"""How many more times a file that looks truncated is read while it keeps changing (a live
writer checkpointing) before it is refused."""


def read_start(path: Path) -> tuple[bytes, int]:
    """The file's first :data:`~chanlog.backends.sqlite_format.SQLITE_HEADER_SIZE` bytes and
    then its size, after refusing a file too short or foreign to have a header. The size is
    taken after the header so that a checkpoint (page 1 first, then the pages that grow the
    file) is seen no shorter than it is."""
    with path.open("rb") as handle:
        header = handle.read(SQLITE_HEADER_SIZE)
        size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise StorageError(
            f"{path}: empty file (0 bytes), not a chanlog database; chanlog never leaves an "
            "empty database behind, so it was truncated or made by another program"
        )
    if not header.startswith(SQLITE_MAGIC) and not SQLITE_MAGIC.startswith(header):
        raise StorageError(f"{path}: not a chanlog database (not an SQLite file)")
    if len(header) < SQLITE_HEADER_SIZE:
        raise StorageError(
            f"{path}: truncated database file ({size} bytes, shorter than the SQLite header)"
        )
    return header, size


def check_header(path: Path, header: bytes, size: int) -> str | None:
    """Check the raw header of a file of ``size`` bytes.

    Returns:
        None when the file is whole, or its shortfall is in the write-ahead log; otherwise
        the message of the "truncated database file" :class:`StorageError`.

    Raises:
        StorageError: the file is not a chanlog database, is newer, or has a corrupt header.
    """
    application_id = int.from_bytes(header[68:72], "big")
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path}: not a chanlog database (SQLite application_id is 0x{application_id:08x}, "
            f"chanlog writes 0x{APPLICATION_ID:08x})"
        )
    # user_version is a signed 32-bit integer: -1 is garbage, not a newer version.
    check_version(path, int.from_bytes(header[60:64], "big", signed=True))
    page_size = int.from_bytes(header[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size & (page_size - 1):
        raise StorageError(f"{path}: corrupt database header (page size {page_size})")
    whole_pages, partial = divmod(size, page_size)
    # The in-header page count is only trustworthy when SQLite stamped it with the current
    # change counter (every SQLite since 3.7.0 does).
    trusted = header[24:28] == header[92:96]
    page_count = int.from_bytes(header[28:32], "big") if trusted else 0
    if partial:
        # A checkpoint was writing the page after the last whole one.
        reason = f"{size} bytes is not a whole number of {page_size}-byte pages"
    elif whole_pages < page_count:
        reason = f"{size} bytes, the header says {page_count * page_size}"
    else:
        return None
    last = max(page_count, whole_pages + 1)
    if wal_holds(Path(f"{path}-wal"), page_size, whole_pages + 1, last):
        return None
    return f"{path}: truncated database file ({reason}; no write-ahead log holds the missing pages)"


_PENDING_BYTE_OFFSET = 0x40000000
"""SQLite never writes the page holding this offset (its lock bytes), in the file or the log."""

_WAL_MAGIC = 0x377F0682
"""The write-ahead log's magic number; with the low bit set its checksums read big-endian
words, else little-endian ones (https://www.sqlite.org/fileformat2.html#walformat)."""

_WAL_VERSION = 3007000
_WAL_HEADER_SIZE = 32
_WAL_FRAME_HEADER_SIZE = 24
_WAL_CHUNK_FRAMES = 512
"""Frames of the write-ahead log read and checksummed at a time (2 MB of 4 KiB pages)."""

_MASK32 = 0xFFFFFFFF


def wal_holds(wal: Path, page_size: int, first: int, last: int) -> bool:
    """Whether the write-ahead log ``wal`` holds every page from ``first`` to ``last``
    (page numbers, both included; the pending-byte page, never written, excepted) in frames
    SQLite will use: the frames from the start of the log that carry its salts and whose
    cumulative checksums are right, up to the last commit frame among them, exactly what
    SQLite recovers from a log (https://www.sqlite.org/fileformat2.html#walformat).

    This is the proof that a main file shorter than its header says is a checkpoint caught
    in the middle, not a damaged file: every page the file lacks was committed to the log
    after the log was last reset, when the file was whole, and SQLite reads those pages from
    the log. A log that ends, is torn, or belongs to another generation (other salts) before
    the last missing page is committed does not prove it, and the file is refused.

    Cost: the log is read with plain file I/O (nothing written, no side file) from its
    start, only until the last missing page is committed, and never when it has fewer frames
    than there are missing pages (a truncated file beside a short log is refused at once).
    The checksums cover the page bodies, so the bodies are read: checking them is what makes
    a torn or stale frame unable to vouch for a page. :func:`frame_checksums` computes them
    for many frames at once, about 60 ms for a full 16 MB log, and this runs only when the
    file is short, which a healthy database is for the milliseconds a checkpoint takes.
    Reading frame headers alone would be cheaper but would trust a frame whose body a crash
    left half written.
    """
    pending_page = _PENDING_BYTE_OFFSET // page_size + 1
    wanted = last - first + 1 - (first <= pending_page <= last)
    if wanted <= 0:
        return True
    try:
        handle = wal.open("rb")
    except OSError:
        return False
    with handle:
        header = handle.read(_WAL_HEADER_SIZE)
        if len(header) < _WAL_HEADER_SIZE:
            return False
        magic, version, wal_page_size, _, _, _, sum1, sum2 = struct.unpack(">8I", header)
        if magic & ~1 != _WAL_MAGIC or version != _WAL_VERSION or wal_page_size != page_size:
            return False
        order: Literal["big", "little"] = "big" if magic & 1 else "little"
        if wal_checksum(header[:24], order) != (sum1, sum2):
            return False
        frame_size = _WAL_FRAME_HEADER_SIZE + page_size
        frames = (os.fstat(handle.fileno()).st_size - _WAL_HEADER_SIZE) // frame_size
        if frames < wanted:
            return False
        salts = header[16:24]
        state = (sum1, sum2)
        held: set[int] = set()  # missing pages in committed frames
        uncommitted: list[int] = []  # missing pages in frames after the last commit frame
        buffer = bytearray(frame_size * min(frames, _WAL_CHUNK_FRAMES))
        while frames:
            count = min(frames, _WAL_CHUNK_FRAMES)
            chunk = memoryview(buffer)[: count * frame_size]
            if handle.readinto(chunk) != len(chunk):
                return False  # the log shrank: reset by a live writer
            sums = frame_checksums(chunk, count, page_size, order, state)
            for index, expected in enumerate(sums):
                page, size_after, frame_salts, frame1, frame2 = _FRAME_HEADER.unpack_from(
                    chunk, index * frame_size
                )
                if frame_salts != salts or page == 0 or (frame1, frame2) != expected:
                    return False  # the valid log ends here
                if first <= page <= last and page != pending_page:
                    uncommitted.append(page)
                if size_after:  # a commit frame
                    held.update(uncommitted)
                    uncommitted.clear()
                    if len(held) == wanted:
                        return True
            state = sums[-1]
            frames -= count
    return False


_FRAME_HEADER = struct.Struct(">II8sII")
"""A frame header: page number, database size after a commit (else 0), salts, checksums."""


def wal_checksum(
    data: bytes, order: Literal["big", "little"], state: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """SQLite's write-ahead-log checksum of ``data`` (a multiple of 8 bytes) continuing
    ``state``, one pair of 32-bit words at a time: the plain definition."""
    first, second = state
    words = struct.unpack(f"{'>' if order == 'big' else '<'}{len(data) // 4}I", data)
    for index in range(0, len(words), 2):
        first = (first + words[index] + second) & _MASK32
        second = (second + words[index + 1] + first) & _MASK32
    return first, second


def frame_checksums(
    frames: memoryview,
    count: int,
    page_size: int,
    order: Literal["big", "little"],
    state: tuple[int, int],
) -> list[tuple[int, int]]:
    """The cumulative checksum after each of ``count`` frames (header and page) in
    ``frames``, continuing ``state``: what :func:`wal_checksum` gives over each frame's first
    8 bytes and page, but about ten times faster.

    One step takes a pair of words ``(x, y)`` from ``(s1, s2)`` to ``(s1 + s2 + x,
    s1 + 2*s2 + x + y)`` mod 2**32, a linear map ``M`` plus the pair. So a frame's checksum
    is ``M**n`` applied to the one before, plus what its own ``n`` pairs give from ``(0, 0)``.
    That part is computed for all frames at once: pair ``k`` of every frame is one big
    integer with a 64-bit lane per frame (the words are 32-bit, so a lane never carries
    into the next), stepped with a handful of integer operations per pair.
    """
    pairs = frames.cast("Q")  # one (x, y) word pair per item; the bytes keep their order
    stride = (_WAL_FRAME_HEADER_SIZE + page_size) // 8
    low = int.from_bytes(b"\x00\x00\x00\x00\xff\xff\xff\xff" * count, "big")
    x_shift, y_shift = (32, 0) if order == "big" else (0, 32)
    lane1 = lane2 = 0
    columns = [0, *range(_WAL_FRAME_HEADER_SIZE // 8, stride)]  # 8 header bytes, the page
    for column in columns:
        lanes = int.from_bytes(pairs[column::stride].tobytes(), order)
        lane1 = (lane1 + (lanes >> x_shift & low) + lane2) & low
        lane2 = (lane2 + (lanes >> y_shift & low) + lane1) & low
    form = f"{'>' if order == 'big' else '<'}{count}Q"
    own1 = struct.unpack(form, lane1.to_bytes(8 * count, order))
    own2 = struct.unpack(form, lane2.to_bytes(8 * count, order))
    a, b, c, d = _step_power(len(columns))
    first, second = state
    sums: list[tuple[int, int]] = []
    for index in range(count):
        first, second = (
            (a * first + b * second + own1[index]) & _MASK32,
            (c * first + d * second + own2[index]) & _MASK32,
        )
        sums.append((first, second))
    return sums


def _step_power(pairs: int) -> tuple[int, int, int, int]:
    """``M**pairs`` mod 2**32 as ``(a, b, c, d)``, rows first, for ``M = ((1, 1), (1, 2))``."""
    a, b, c, d = 1, 0, 0, 1
    for _ in range(pairs):
        a, b, c, d = (
            (a + c) & _MASK32,
            (b + d) & _MASK32,
            (a + 2 * c) & _MASK32,
            (b + 2 * d) & _MASK32,
        )
    return a, b, c, d
