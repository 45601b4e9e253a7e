"""The ``channel-read-model`` handler: the latest supported state of every channel, kept in a
SQLite table of its own, each record's effect applied exactly once.

This is the effectively-once pattern for a handler whose effects live outside the log (what
eventsourcing calls tracking records): the handler writes its effect and the offset it has
reached in one transaction of its own database, and tells the runner where it got to
(:class:`~chanlog.bus.handlers.TracksPosition`). A crash between that commit and the
consumer's position commit only means the runner resumes from the handler's offset; a
record handed to it again is recognised by its offset and changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import attrs

from chanlog.errors import ConfigError, IntegrityError, StorageError
from chanlog.events.channel import StateSupportedUpdated
from chanlog.folded_chain import another_record_at
from chanlog.records import RecordedEvent

__all__ = ["ChannelReadModel", "LatestState"]

_DDL = (
    """CREATE TABLE IF NOT EXISTS channel_latest (
        channel_id TEXT PRIMARY KEY,
        supported_turn INTEGER NOT NULL,
        state_hash TEXT NOT NULL,
        offset INTEGER NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        updates INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tracking (
        consumer TEXT PRIMARY KEY,
        next_offset INTEGER NOT NULL,
        chain_hash BLOB
    )""",
    # Records below a consumer's tracked offset applied by a replay: each once.
    """CREATE TABLE IF NOT EXISTS replayed (
        consumer TEXT NOT NULL,
        offset INTEGER NOT NULL,
        PRIMARY KEY (consumer, offset)
    )""",
)

# A record sets the row's state only if no later record did (a replayed one is older than
# what was applied after it was parked); it counts either way.
_APPLY = (
    "INSERT INTO channel_latest VALUES (?, ?, ?, ?, ?, 1) "
    "ON CONFLICT (channel_id) DO UPDATE SET "
    "supported_turn = CASE WHEN excluded.offset > offset "
    "THEN excluded.supported_turn ELSE supported_turn END, "
    "state_hash = CASE WHEN excluded.offset > offset "
    "THEN excluded.state_hash ELSE state_hash END, "
    "timestamp_ms = CASE WHEN excluded.offset > offset "
    "THEN excluded.timestamp_ms ELSE timestamp_ms END, "
    "offset = max(offset, excluded.offset), updates = updates + 1"
)


@attrs.frozen
class LatestState:
    """One row of the read model.

    Attributes:
        channel_id: the channel.
        supported_turn: its latest supported turn.
        state_hash: that state's hash.
        offset: the log offset of the ``state-supported-updated`` that set it.
        timestamp_ms: that event's timestamp.
        updates: how many ``state-supported-updated`` records were applied to the row (once
            each, whatever the crashes: the effectively-once check).
    """

    channel_id: str
    supported_turn: int
    state_hash: str
    offset: int
    timestamp_ms: int
    updates: int


class ChannelReadModel:
    """Applies ``state-supported-updated`` records to ``channel_latest`` (other records only
    move its tracking offset).

    Args:
        path: the SQLite file of the read model (created if missing).
    """

    def __init__(self, *, path: str | os.PathLike[str], **options: Any) -> None:
        if options:
            raise ConfigError(
                f"the channel-read-model handler has no option {sorted(options)[0]!r} "
                "(it takes path)",
                key=sorted(options)[0],
            )
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            for statement in _DDL:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(tracking)")}
            if "chain_hash" not in columns:  # a read model written before ADR 0047
                self._db.execute("ALTER TABLE tracking ADD COLUMN chain_hash BLOB")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the read model: {exc}") from exc
        self._consumer = "default"

    def bind(self, store: Any, consumer: str) -> None:
        """Remember which consumer's offset to track, once the log still holds the record
        this read model applied last for it.

        Raises:
            IntegrityError: the log's record at that offset is another (its chain hash
                differs): the log lost records the read model applied and others took
                their offsets (ADR 0047). The rows it holds cannot be taken back: rebuild it.
        """
        self._consumer = consumer
        row = self._db.execute(
            "SELECT next_offset, chain_hash FROM tracking WHERE consumer = ?", (consumer,)
        ).fetchone()
        if row is None or row[1] is None:
            return
        offset = int(row[0]) - 1
        if another_record_at(store.backend, offset, bytes(row[1])):
            raise IntegrityError(
                f"{self.path}: the read model applied the record at offset {offset} for "
                f"consumer {consumer!r}, but the log's record there is another (its chain hash "
                "differs): the log lost records it had applied and others took their offsets; "
                "rebuild the read model (a new file) and reset the consumer (chanlog "
                f"consumers reset {consumer} --to 0)",
                offset=offset,
            )

    def position(self, consumer: str) -> int | None:
        """The offset after the last record applied for ``consumer``."""
        row = self._db.execute(
            "SELECT next_offset FROM tracking WHERE consumer = ?", (consumer,)
        ).fetchone()
        return None if row is None else int(row[0])

    def __call__(self, record: RecordedEvent) -> None:
        done = self.position(self._consumer)
        if done is not None and record.offset < done:
            return  # applied before a crash lost the runner's position commit
        self._write(record, replayed=False)

    def replay(self, record: RecordedEvent) -> None:
        """Apply a record parked earlier, below the tracked offset, that an operator asked
        to replay (:class:`~chanlog.bus.handlers.ReplaysBelowPosition`): the channel's row
        takes its state unless a later record set it, and counts it. The offset is recorded
        as replayed in the same transaction, so a replay handed over again (the process died
        before the runner recorded it) changes nothing."""
        self._write(record, replayed=True)

    def _write(self, record: RecordedEvent, *, replayed: bool) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if (
                replayed
                and db.execute(
                    "SELECT 1 FROM replayed WHERE consumer = ? AND offset = ?",
                    (self._consumer, record.offset),
                ).fetchone()
            ):
                db.execute("ROLLBACK")
                return
            event = record.event
            if isinstance(event, StateSupportedUpdated):
                db.execute(
                    _APPLY,
                    (
                        event.channel_id.lower(),
                        event.supported_turn,
                        event.state_hash,
                        record.offset,
                        event.timestamp_ms,
                    ),
                )
            if replayed:
                db.execute("INSERT INTO replayed VALUES (?, ?)", (self._consumer, record.offset))
            else:
                db.execute(
                    "INSERT INTO tracking VALUES (?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET "
                    "next_offset = excluded.next_offset, chain_hash = excluded.chain_hash",
                    (self._consumer, record.offset + 1, bytes.fromhex(record.chain_hash[2:])),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def latest(self, channel_id: str) -> LatestState | None:
        """The row of one channel."""
        row = self._db.execute(
            "SELECT * FROM channel_latest WHERE channel_id = ?", (channel_id.lower(),)
        ).fetchone()
        return None if row is None else LatestState(*row)

    def all(self) -> list[LatestState]:
        """Every row, by channel id."""
        rows = self._db.execute("SELECT * FROM channel_latest ORDER BY channel_id").fetchall()
        return [LatestState(*row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()
