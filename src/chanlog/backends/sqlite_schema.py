"""The on-disk format of a chanlog SQLite database: how it is created, how a file is checked
before chanlog writes anything to it (ADR 0011), and how a file of schema version 1 is
upgraded to version 2 (ADR 0018).

A chanlog database is an SQLite file in WAL mode, stamped with ``PRAGMA application_id``
(:data:`APPLICATION_ID`, ASCII ``chlg``) and ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`).
A new database is built completely in a private temporary file and then hard-linked into place,
so another process never sees a half-created database, and an existing file is inspected
(first its raw header bytes, then through a read-only connection) before a writable
connection is ever opened on it: a file that is not a chanlog database, a truncated one, or
one written by a newer chanlog raises :class:`~chanlog.errors.StorageError` and stays
byte-for-byte untouched.

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

Schema version 2 (ADR 0018) writes as few pages per commit as raw SQLite needs for an event
row and its unique event id: the length and last chain hash are read from the last row
instead of a ``head`` row, and the ``streams`` index is written a block of
:data:`STREAM_INDEX_BLOCK` positions at a time (readers look through the unindexed tail
of fewer than that many records themselves). A version 1 file is upgraded in place, in one
``BEGIN IMMEDIATE`` transaction, the first time a writer opens it (:func:`upgrade`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
import urllib.parse
from pathlib import Path
from typing import Literal

from chanlog.errors import StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head

__all__ = [
    "APPLICATION_ID",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "STREAM_INDEX_BLOCK",
    "TABLES",
    "check_existing",
    "create_database",
    "head_of",
    "read_only_uri",
    "stream_index_block",
    "upgrade",
]

APPLICATION_ID = 0x63686C67
"""``PRAGMA application_id`` of every chanlog database: the ASCII bytes ``chlg``."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` this chanlog writes; a file with a greater one is refused, a file
of version 1 is upgraded when a writer opens it."""

FORMAT_NAME = "chanlog"
"""The ``format`` row of the ``chanlog_meta`` table."""

STREAM_INDEX_BLOCK = 32
"""Positions entered in the ``streams`` index together, written into each new file's
``chanlog_meta`` (``stream_index_block``); a file keeps the block it was created with."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100

# Columns are named ``position`` rather than ``offset``: OFFSET is an SQL keyword.
# ``stream`` is an event's first stream and ``streams`` (JSON) the rest, or '' when there are
# none; rows written by schema version 1 have ``stream`` NULL and all their streams in
# ``streams``. ``stream`` is last because version 1 files gain it with ALTER TABLE.
_DDL = (
    "CREATE TABLE chanlog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE events ("
    " position INTEGER PRIMARY KEY,"
    " event_id BLOB NOT NULL UNIQUE,"
    " event_type TEXT NOT NULL,"
    " streams TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " chain_hash BLOB NOT NULL,"
    " stream TEXT)",
    # Every (stream, position) of the positions below the last whole block; the tail after
    # it is read from the events rows (ADR 0018).
    "CREATE TABLE streams ("
    " stream TEXT NOT NULL,"
    " position INTEGER NOT NULL,"
    " PRIMARY KEY (stream, position)) WITHOUT ROWID",
    "CREATE TABLE snapshots ("
    " position INTEGER PRIMARY KEY,"
    " versions TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " snapshot_hash BLOB NOT NULL)",
)

TABLES = frozenset({"chanlog_meta", "events", "streams", "snapshots"})
"""The tables every chanlog database of :data:`SCHEMA_VERSION` has."""

_TABLES_V1 = TABLES | {"head"}

# Schema version 1 -> 2, after the head row was checked against the last record. Adding a
# nullable column only rewrites the schema, not the rows, so this costs the same on any log.
_UPGRADE_FROM_V1 = (
    "ALTER TABLE events ADD COLUMN stream TEXT",
    "DROP TABLE head",
)


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """An SQLite URI opening ``path`` read-only (quoted, so any file name works).

    ``immutable`` reads the main file only, without locks or side files: right when there is
    no write-ahead log to read.
    """
    query = "?immutable=1" if immutable else "?mode=ro"
    return "file:" + urllib.parse.quote(str(path.resolve())) + query


def create_database(path: Path) -> bool:
    """Create an empty chanlog database at ``path`` atomically.

    The database is built and closed in a temporary file in the same directory, then
    hard-linked to ``path``, which fails if ``path`` exists: of several processes creating one
    database at once, exactly one wins and the others open what it made.

    Returns:
        True when this call created ``path``; False when it already existed.

    Raises:
        StorageError: the directory is missing or not writable, or SQLite failed.
    """
    directory = path.parent
    if not directory.is_dir():
        raise StorageError(f"{path}: directory {directory} does not exist")
    temporary = directory / f".{path.name}.creating-{os.getpid()}-{threading.get_ident()}"
    try:
        _build(temporary)
        return _publish(temporary, path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the database: {exc}") from exc
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot create the database: {exc}") from exc
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _build(temporary: Path) -> None:
    connection = sqlite3.connect(temporary, isolation_level=None)
    try:
        connection.execute("PRAGMA page_size = 4096")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{temporary}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("BEGIN IMMEDIATE")
        for statement in _DDL:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO chanlog_meta (key, value) VALUES (?, ?)",
            [
                ("format", FORMAT_NAME),
                ("schema_version", str(SCHEMA_VERSION)),
                ("stream_index_block", str(STREAM_INDEX_BLOCK)),
            ],
        )
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
        # Fold the WAL into the main file so the published file is complete on its own.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _publish(temporary: Path, path: Path) -> bool:
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links: claim the name exclusively and copy the bytes in.
        # A process opening the file in between sees it empty or short and gets a clear
        # StorageError rather than a second, diverging database.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(descriptor, temporary.read_bytes())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - filesystems that refuse directory fsync
        pass
    finally:
        os.close(descriptor)


def check_existing(path: Path) -> None:
    """Refuse, without writing anything, a file chanlog must not open for writing.

    The raw header is checked first (no SQLite connection, so no side files appear for the
    common bad cases), then a read-only connection confirms what the header cannot show:
    changes still in the write-ahead log, and the tables.

    A file shorter than its header says is refused as truncated unless the write-ahead log
    beside it holds every missing page (:func:`_wal_holds`): a checkpoint writes page 1,
    which states the new page count, before the pages that grow the file, so a process
    killed then, or another process looking meanwhile, sees a healthy database cut short.
    When the log does not explain it, the file is read again: a live writer may have finished
    the checkpoint and reset its log between the two reads, and the file is refused only when
    it stays the same across the look at the log (or still moves after :data:`_RECHECKS`
    looks).

    Raises:
        StorageError: naming the path and what is wrong with it.
    """
    header, size = _read_start(path)
    for attempt in range(_RECHECKS + 1):
        truncated = _check_header(path, header, size)
        if truncated is None:
            break
        again = _read_start(path)
        if again == (header, size) or attempt == _RECHECKS:
            raise StorageError(truncated)
        header, size = again
    _check_with_read_only_connection(path)


_RECHECKS = 5
"""How many more times a file that looks truncated is read while it keeps changing (a live
writer checkpointing) before it is refused."""


def _read_start(path: Path) -> tuple[bytes, int]:
    """The file's first :data:`_HEADER_SIZE` bytes and then its size, after refusing a file
    too short or foreign to have a header. The size is taken after the header so that a
    checkpoint (page 1 first, then the pages that grow the file) is seen no shorter than it
    is."""
    with path.open("rb") as handle:
        header = handle.read(_HEADER_SIZE)
        size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise StorageError(
            f"{path}: empty file (0 bytes), not a chanlog database; chanlog never leaves an "
            "empty database behind, so it was truncated or made by another program"
        )
    if not header.startswith(_SQLITE_MAGIC) and not _SQLITE_MAGIC.startswith(header):
        raise StorageError(f"{path}: not a chanlog database (not an SQLite file)")
    if len(header) < _HEADER_SIZE:
        raise StorageError(
            f"{path}: truncated database file ({size} bytes, shorter than the SQLite header)"
        )
    return header, size


def _check_header(path: Path, header: bytes, size: int) -> str | None:
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
    _check_version(path, int.from_bytes(header[60:64], "big"))
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
    if _wal_holds(Path(f"{path}-wal"), page_size, whole_pages + 1, last):
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


def _wal_holds(wal: Path, page_size: int, first: int, last: int) -> bool:
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
    a torn or stale frame unable to vouch for a page. :func:`_frame_checksums` computes them
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
        if _checksum(header[:24], order) != (sum1, sum2):
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
            sums = _frame_checksums(chunk, count, page_size, order, state)
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


def _checksum(
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


def _frame_checksums(
    frames: memoryview,
    count: int,
    page_size: int,
    order: Literal["big", "little"],
    state: tuple[int, int],
) -> list[tuple[int, int]]:
    """The cumulative checksum after each of ``count`` frames (header and page) in
    ``frames``, continuing ``state``: what :func:`_checksum` gives over each frame's first
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


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: written by a newer chanlog (schema version {version}; this chanlog "
            f"reads up to {SCHEMA_VERSION}); upgrade chanlog to open it"
        )
    if version < 1:
        raise StorageError(f"{path}: not a chanlog database (schema version {version})")


def _check_with_read_only_connection(path: Path) -> None:
    # Without a write-ahead log the main file is the whole database: read it immutable, so
    # no -wal/-shm files appear next to a file that may not be ours. With a WAL present,
    # committed changes may live only there, so SQLite must read it (its side files exist).
    immutable = not Path(f"{path}-wal").exists()
    try:
        connection = sqlite3.connect(
            read_only_uri(path, immutable=immutable), uri=True, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the database read-only: {exc}") from exc
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        if application_id != APPLICATION_ID:
            raise StorageError(f"{path}: not a chanlog database (application_id changed)")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version)
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        missing = (_TABLES_V1 if version == 1 else TABLES) - tables
        if missing:
            raise StorageError(
                f"{path}: damaged chanlog database (missing tables: {', '.join(sorted(missing))})"
            )
        row = connection.execute("SELECT value FROM chanlog_meta WHERE key = 'format'").fetchone()
        if row is None or row[0] != FORMAT_NAME:
            raise StorageError(f"{path}: damaged chanlog database (no format marker)")
        if version == 1:
            if connection.execute("SELECT count(*) FROM head").fetchone()[0] != 1:
                raise StorageError(f"{path}: damaged chanlog database (head row missing)")
        else:
            stream_index_block(connection, path)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: unreadable database: {exc}") from exc
    except UnicodeDecodeError as exc:
        # A changed byte in the schema (or the meta table) can leave text that is not UTF-8,
        # which sqlite3 fails to decode into a str.
        raise StorageError(
            f"{path}: damaged chanlog database (text in its schema is not UTF-8: {exc}); the "
            "file was changed outside chanlog"
        ) from exc
    finally:
        connection.close()


def stream_index_block(connection: sqlite3.Connection, path: Path) -> int:
    """The ``stream_index_block`` of the (version 2) database open on ``connection``.

    Raises:
        StorageError: the row is missing or not a positive integer.
    """
    row = connection.execute(
        "SELECT value FROM chanlog_meta WHERE key = 'stream_index_block'"
    ).fetchone()
    value = row[0] if row is not None else None
    # isascii: str.isdigit() also accepts digits int() refuses ("²"); the length keeps
    # int() within its digit limit.
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isdigit()
        or len(value) > 18
        or int(value) < 1
    ):
        raise StorageError(
            f"{path}: damaged chanlog database (stream_index_block is {value!r}, "
            "not a positive integer)"
        )
    return int(value)


def upgrade(connection: sqlite3.Connection, path: Path) -> bool:
    """Bring the database open on ``connection`` (a writer, in autocommit mode) to
    :data:`SCHEMA_VERSION`, in one ``BEGIN IMMEDIATE`` transaction: all of it or, on any
    failure, nothing. Several processes opening one old file at once upgrade it once.

    Version 1 keeps its rows: they have no ``stream`` and are all in the ``streams`` index,
    which is what version 2 reads from such rows. The ``head`` row goes, after it was
    compared with the last record: a version 1 log whose records were cut off the end is
    refused, not upgraded, because after the upgrade nothing in the file would show it.

    Returns:
        Whether this call upgraded the file.

    Raises:
        StorageError: the version 1 file is damaged, or SQLite failed.
    """
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return False
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:  # another process was first
                connection.execute("ROLLBACK")
                return False
            _check_version(path, version)
            _check_v1_head(connection, path)
            for statement in _UPGRADE_FROM_V1:
                connection.execute(statement)
            connection.executemany(
                "INSERT OR REPLACE INTO chanlog_meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("stream_index_block", str(STREAM_INDEX_BLOCK)),
                ],
            )
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StorageError(
            f"{path}: cannot upgrade the database to schema version {SCHEMA_VERSION}: {exc}"
        ) from exc
    return True


SELECT_LAST = "SELECT position, chain_hash FROM events ORDER BY position DESC LIMIT 1"
"""The last record's position and chain hash: the rowid b-tree's last entry, O(log n)."""


def head_of(last: tuple[int, bytes] | None, path: Path | None = None) -> Head:
    """The head after the last record (a :data:`SELECT_LAST` row), or of an empty log.

    Raises:
        StorageError: the row's position is not an integer or its chain hash not 32 bytes
            (a damaged file: a changed byte can turn a column into another type). ``path``,
            when given, is named in the message.
    """
    if last is None:
        return Head(0, GENESIS_CHAIN_HASH)
    position, chain_hash = last
    if (
        type(position) is not int
        or position < 0
        or type(chain_hash) is not bytes
        or len(chain_hash) != 32
    ):
        where = f"{path}: " if path is not None else ""
        raise StorageError(
            f"{where}damaged chanlog database: the last record has position "
            f"{_short(position)} and chain hash {_short(chain_hash)} (an integer >= 0 and 32 "
            "bytes were written); the file was changed outside chanlog"
        )
    return Head(position + 1, chain_hash)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_v1_head(connection: sqlite3.Connection, path: Path) -> None:
    head = connection.execute("SELECT length, chain_hash FROM head WHERE id = 0").fetchone()
    last = head_of(connection.execute(SELECT_LAST).fetchone(), path)
    if head is None:
        reason = "no head row"
    elif head[0] != last.length:
        reason = f"its head row says {head[0]} records, the events end at offset {last.length}"
    elif head[1] != last.chain_hash:
        reason = "its head row's chain hash is not the last record's"
    else:
        return
    raise StorageError(
        f"{path}: damaged chanlog database of schema version 1 ({reason}): records were cut "
        "off the end or edited, so chanlog will not upgrade it; check it with the chanlog "
        "that wrote it (chanlog verify) and recover from a backup"
    )
