"""The ``sqlite`` backend's options, checked, and the SQLite settings they turn into: how each
connection is opened and which pragmas it gets (ADR 0011).

A bad option is a :class:`~chanlog.errors.ConfigError` naming its ``backend.<key>``, raised
before anything touches the disk.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import attrs

from chanlog.errors import ConfigError, StorageError

__all__ = [
    "DURABILITY_LEVELS",
    "OPTION_NAMES",
    "WAL_AUTOCHECKPOINT_PAGES",
    "WRITER_CACHE_KIB",
    "FileAsIs",
    "SqliteOptions",
    "connect",
    "read_only_uri",
    "unreadable_log",
]

DURABILITY_LEVELS = {"full": "FULL", "normal": "NORMAL"}
"""``durability`` option → SQLite ``synchronous`` setting."""

WRITER_CACHE_KIB = 16_384
"""Page cache of the writing connection (SQLite's default is 2 MiB). Event ids are random,
so each batch touches index pages all over the event-id index; once a log outgrows the
cache every lookup and insert rereads pages from the operating system (ADR 0011)."""

WAL_AUTOCHECKPOINT_PAGES = 4_000
"""Write-ahead-log pages (about 16 MB) after which a commit copies the log into the main
file (SQLite's default is 1,000). Pages rewritten by several commits are copied once per
checkpoint, so fewer checkpoints copy fewer pages; durability does not change, as every
commit is still fsync'd in the write-ahead log."""

OPTION_NAMES = ("path", "durability", "timeout", "poll_interval", "read_only", "create")
"""Every option the ``sqlite`` backend takes, in the order its messages list them."""


@attrs.frozen
class SqliteOptions:
    """The checked options of one ``sqlite`` backend (see
    :class:`~chanlog.backends.sqlite.SqliteBackend` for what each one means)."""

    path: Path
    durability: str = "full"
    timeout: float = 30.0
    poll_interval: float = 0.05
    read_only: bool = False
    create: bool = True

    @classmethod
    def parse(cls, path: object, unknown: dict[str, Any], **options: object) -> SqliteOptions:
        """Check every option; ``unknown`` holds the keyword arguments no parameter took.

        Raises:
            ConfigError: an unknown option, or one of the wrong type or range.
        """
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"sqlite backend: unknown option {key!r} (options: {', '.join(OPTION_NAMES)})",
                key=f"backend.{key}",
            )
        return cls(
            path=_check_path(path),
            durability=_check_durability(options["durability"]),
            timeout=_check_seconds("timeout", options["timeout"]),
            poll_interval=_check_seconds("poll_interval", options["poll_interval"]),
            read_only=_check_flag("read_only", options["read_only"]),
            create=_check_flag("create", options["create"]),
        )


def _check_path(path: object) -> Path:
    if path is None:
        raise ConfigError("sqlite backend: the option 'path' is required", key="backend.path")
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise ConfigError(
            f"sqlite backend: path must be a string or path, got {type(path).__name__}",
            key="backend.path",
        )
    text = os.fspath(path)
    if isinstance(text, str) and ("\x00" in text or not _encodable_path(text)):
        raise ConfigError(
            f"sqlite backend: path {text!r} is no file name this system can have "
            "(a NUL byte, or text that does not encode)",
            key="backend.path",
        )
    if not isinstance(text, str) or not text or text == ":memory:" or text.startswith("file:"):
        raise ConfigError(
            f"sqlite backend: path must name a file, got {text!r} (use the memory backend "
            "for a log without a file)",
            key="backend.path",
        )
    return Path(text)


def _encodable_path(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return True


def _check_durability(durability: object) -> str:
    if not isinstance(durability, str) or durability not in DURABILITY_LEVELS:
        raise ConfigError(
            f"sqlite backend: durability must be 'full' or 'normal', got {durability!r}",
            key="backend.durability",
        )
    return durability


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"sqlite backend: {name} must be a positive number of seconds, got {value!r}",
            key=f"backend.{name}",
        )
    return float(value)


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            f"sqlite backend: {name} must be true or false, got {value!r}", key=f"backend.{name}"
        )
    return value


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """An SQLite URI opening ``path`` read-only (quoted, so any file name works).

    ``immutable`` reads the main file only, without locks or side files: right when there is
    no write-ahead log to read and no writer can appear.
    """
    # mode=ro with immutable too: an immutable URI alone creates a file that is missing.
    query = "?mode=ro&immutable=1" if immutable else "?mode=ro"
    return "file:" + urllib.parse.quote(str(path.resolve())) + query


_NO_SIDE_FILES = frozenset({"SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN"})
"""What SQLite answers a read-only connection that cannot create the file's ``-shm`` index
(a directory this process may not write to, or a read-only file system)."""


class FileAsIs(sqlite3.Connection):
    """A read-only connection that reads the main file as it is (``immutable=1``): what a
    read-only backend opens when it may create no file beside the log and no write-ahead
    log is there (ADR 0039). It sees the file as it was when opened, so it is used for one
    read and closed, never pooled."""


def connect(options: SqliteOptions, *, writer: bool) -> sqlite3.Connection:
    """Open a connection to the database: the writer (WAL, the durability's ``synchronous``,
    a large cache, a rarer autocheckpoint) or a reader (``query_only``; opened ``mode=ro``
    when the backend is read-only, so not even a bug can write through it). Connections are
    in autocommit mode and may be used from any thread (the backend serializes them).

    Raises:
        StorageError: SQLite cannot open the file or refuses WAL mode.
    """
    path = options.path
    try:
        if options.read_only:
            target: str | Path = read_only_uri(path)
        else:
            target = path
        connection = sqlite3.connect(
            target,
            timeout=options.timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=options.read_only,
        )
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open: {exc}") from exc
    try:
        if writer:
            _configure_writer(connection, options)
        else:
            connection.execute("PRAGMA query_only = 1")
            if options.read_only:
                _first_read(connection)
    except BaseException as exc:
        connection.close()
        if isinstance(exc, sqlite3.Error):
            if options.read_only and _error_name(exc) in _NO_SIDE_FILES:
                return _connect_as_is(path, exc)
            raise StorageError(f"{path}: cannot open: {exc}") from exc
        raise
    return connection


def _error_name(error: sqlite3.Error) -> str | None:
    """SQLite's name of ``error`` (``SQLITE_CANTOPEN``...); ``None`` for an error the
    ``sqlite3`` module raised itself, which has none (text of a damaged file that does not
    decode as UTF-8, for one)."""
    return getattr(error, "sqlite_errorname", None)


def unreadable_log(path: Path, refused: sqlite3.Error) -> StorageError | None:
    """The error for a read that SQLite refused because it may not create the ``-shm``
    index beside ``path`` while a write-ahead log is there (its changes are not in the main
    file yet); ``None`` when ``refused`` is another failure or no such log is there."""
    log = Path(f"{path}-wal")
    if _error_name(refused) not in _NO_SIDE_FILES or not log.exists():
        return None
    if log.stat().st_size == 0:
        return None
    return StorageError(
        f"{path}: cannot be read here: SQLite must create {path.name}-shm beside it to read "
        f"its write-ahead log {log.name}, which holds changes the file does not have yet "
        f"({refused}); open it once where it may be written (a writer folds the log into "
        "the file when it closes), or read a copy of both files from a writable directory"
    )


def _first_read(connection: sqlite3.Connection) -> None:
    """Read the schema: SQLite opens lazily, and the first read is what needs the ``-shm``
    index, so a connection that cannot have one fails here rather than in a later read."""
    connection.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _connect_as_is(path: Path, refused: sqlite3.Error) -> sqlite3.Connection:
    """A :class:`FileAsIs` connection to ``path``, for a reader that may not create its
    ``-shm`` file; refused when a write-ahead log holds changes the main file lacks."""
    error = unreadable_log(path, refused)
    if error is not None:
        raise error from refused
    try:
        connection = sqlite3.connect(
            read_only_uri(path, immutable=True),
            isolation_level=None,
            check_same_thread=False,
            uri=True,
            factory=FileAsIs,
        )
        connection.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:  # pragma: no cover - the file vanished since the first try
        raise StorageError(f"{path}: cannot open: {exc}") from exc
    return connection


def _configure_writer(connection: sqlite3.Connection, options: SqliteOptions) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"{options.path}: SQLite refused WAL mode (got {mode!r})")
    connection.execute(f"PRAGMA synchronous = {DURABILITY_LEVELS[options.durability]}")
    connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
