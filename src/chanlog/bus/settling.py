"""A runner's move whose commit failed, and whether it landed all the same.

A database can commit a transaction and lose the connection before it says so: a
PostgreSQL server stopping or crashing during ``COMMIT``, a network cut at that moment. The
runner then gets a :class:`~chanlog.errors.StorageError` for a move that may be committed.
Handing the records it covered over again would run a handler twice for one record, and a
handler that returns events would append a second set (their timestamps, hence their ids,
differ), which is what committing the appends with the position is there to prevent. The
stored position settles it: the runner holds the lease, so nobody else moves it (ADR 0042).
The stored position also says where to go on when the log lost records the runner had
passed (ADR 0043), or others took their offsets (ADR 0047).
"""

from __future__ import annotations

import logging
from typing import NoReturn

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.handlers import TracksPosition
from chanlog.errors import IntegrityError
from chanlog.records import PositionMove

__all__ = ["StoredPosition"]

logger = logging.getLogger("chanlog.bus")


class StoredPosition:
    """What a runner asks its consumer's stored position: whether a move whose commit
    failed landed all the same (ADR 0042), and where to go on when the log lost records
    the runner had passed (ADR 0043). It also keeps the one move being committed, or whose
    commit failed.

    Args:
        keeper: the backend keeping the consumer.
        consumer: the consumer's name.
    """

    __slots__ = ("_consumer", "_keeper", "handled", "position")

    def __init__(self, keeper: KeepsConsumers, consumer: str) -> None:
        self._keeper = keeper
        self._consumer = consumer
        self.position: int | None = None
        """The position the move goes to; ``None`` when no move is in doubt."""
        self.handled: int | None = None
        """The handled count the move brings the stored one to, when the position alone
        cannot tell (a move that does not advance it); else ``None``."""

    def expect(self, position: int, committed: int, move: PositionMove | None = None) -> None:
        """A move from ``committed`` to ``position`` is about to be committed. A move that
        does not advance the position is told by the handled count it adds instead (read
        now, only then: nobody else changes it while the runner holds the lease), when it
        counts records and unparks none (a replay is settled by its parked row, ADR 0059);
        otherwise it cannot be told apart from none, so it is not kept: should it fail, it
        is committed again (at least once).

        Raises:
            StorageError: the handled count cannot be read; nothing was committed.
        """
        self.handled = None
        if position > committed:
            self.position = position
        elif move is not None and move.handled and not move.unparked:
            state = self._keeper.consumer_state(self._consumer)
            self.position = None if state is None else position
            self.handled = None if state is None else state.handled + move.handled
        else:
            self.position = None

    def clear(self) -> None:
        """The move is settled: committed as far as the runner knows, or given up."""
        self.position = self.handled = None

    def landed(self) -> int | None:
        """The stored position when the move in doubt is in it, else ``None`` (no move in
        doubt, or it did not land: what it covered is still to commit). Either way nothing
        is in doubt afterwards.

        Raises:
            StorageError: the storage cannot tell yet; the move stays in doubt.
        """
        position, handled = self.position, self.handled
        if position is None:
            return None
        state = self._keeper.consumer_state(self._consumer)
        self.clear()
        if state is None or state.position < position:
            return None
        if handled is not None and state.handled < handled:
            return None
        return state.position

    def resumed(self, position: int, length: int, handler: object) -> int:
        """Where a runner at ``position`` goes on when the log holds only ``length`` records,
        fewer than it passed: the log lost records (ADR 0043). The consumer's stored position
        was lost with them (the database writes in commit order), so the runner starts again
        from it, and never past the log's end: the records that take the lost offsets are
        handed over, none skipped.

        Raises:
            StorageError: the stored position cannot be read; the runner retries.
            IntegrityError: the handler keeps its own position
                (:class:`~chanlog.bus.handlers.TracksPosition`: a relay, a read model); see
                :meth:`refuse`.
        """
        consumer = self._consumer
        if isinstance(handler, TracksPosition):
            self.refuse(position, length)
        resumed = self._within(length)
        logger.error(
            "consumer %s: the log holds %d records but this runner had passed %d (the log lost "
            "records); going on from %d",
            consumer,
            length,
            position,
            resumed,
        )
        return resumed

    def parted(self, position: int, offset: int, handler: object) -> int:
        """Where a runner at ``position`` goes on when the log's record at ``offset`` is not
        the one it examined there (its chain hash differs): the log lost records the runner
        had passed and others took their offsets (ADR 0047). The stored position was lost
        with them, as in :meth:`resumed`; the runner starts again from it, and never past
        ``offset``.

        Raises:
            StorageError: the stored position cannot be read; the runner retries.
            IntegrityError: the handler keeps its own position; see :meth:`refuse`.
        """
        if isinstance(handler, TracksPosition):
            why = f"the log's record at offset {offset} is not the one it was handed,"
            self.refuse(position, offset, why=why)
        resumed = self._within(offset)
        logger.error(
            "consumer %s: the log's record at offset %d is not the one this runner examined "
            "there (its chain hash differs): the log lost records it had passed and others "
            "took their offsets; going on from %d",
            self._consumer,
            offset,
            resumed,
        )
        return resumed

    def refuse(self, reached: int, length: int, *, why: str = "") -> NoReturn:
        """Refuse to go on for a handler that keeps its own position and had reached
        ``reached``, past the first ``length`` records, the most the log still holds as the
        handler saw them: what it did with the lost records is outside the log, where the
        runner cannot undo it (a relay would also take the records that replace them for
        ones it published).

        Raises:
            IntegrityError: always, naming the offset to rebuild from (the stored position, or
                ``length`` when that is lower), the reset to run, and ``why`` (by default:
                the log holds ``length`` records).
            StorageError: the stored position cannot be read.
        """
        consumer = self._consumer
        resumed = self._within(length)
        raise IntegrityError(
            f"consumer {consumer!r}: {why or f'the log holds {length} records'} but its "
            f"handler had reached offset {reached}: the log lost records its handler had "
            "applied outside it (it keeps its own position); rebuild what it feeds from "
            f"offset {resumed} on, then reset the consumer (chanlog consumers reset "
            f"{consumer} --to {resumed})",
            offset=resumed,
        )

    def overtaken(self, own: int, position: int) -> None:
        """Say that the handler, which keeps its own position, has applied the records up
        to ``own``, past the stored ``position``, and that the runner goes on from ``own``.
        A crash that lost the runner's position commit leaves that; so does a reset of the
        consumer while what the handler feeds was kept, which going on from ``own`` undoes:
        the warning says so, since nothing else would."""
        logger.warning(
            "consumer %s: its handler keeps its own position and has applied the records up "
            "to offset %d, past the stored position %d; going on from %d (expected after a "
            "crash lost a position commit; after a reset, the reset is undone: rebuild what "
            "the handler feeds, a new read-model file or stream, before resetting)",
            self._consumer,
            own,
            position,
            own,
        )

    def _within(self, length: int) -> int:
        """The stored position, or ``length`` when that is lower or nothing is stored."""
        state = self._keeper.consumer_state(self._consumer)
        return length if state is None else min(length, state.position)
