"""Conformance cases for durable consumers kept by the backend
(:class:`~chanlog.backends.consumer_store.KeepsConsumers`, DESIGN section 10): one case per
rule of :mod:`chanlog.backends.consumer_store`, on one handle. Transactions, several handles
and read-only handles are in :mod:`chanlog.testing.conformance.consumer_sharing`.

Every test skips, saying so, when the backend lacks the capability (``isinstance`` decides,
as the runner does). Times are the backend's own: the tests compare its times with each
other, never with this process's clock, and wait out a lease only with short TTLs (0.2 s)
whose expiry is all they assert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from chanlog.backends.base import Backend
from chanlog.backends.consumer_store import KeepsConsumers, ReadsConsumerClock
from chanlog.errors import InvalidArgument, LeaseHeld, NotFound
from chanlog.records import ConsumerState, ParkedRecord, PositionMove
from chanlog.testing.conformance.fixtures import ConformanceFixtures

__all__ = [
    "LONG_TTL",
    "SHORT_TTL",
    "ConsumerFixtures",
    "KeepsConsumersCases",
    "parked_record",
    "parked_view",
    "wait_out",
]

SHORT_TTL = 0.2
"""Seconds of a lease a test lets expire."""

LONG_TTL = 60.0
"""Seconds of a lease a test relies on still running, however slow the machine."""

SUBJECTS = ("chanlog.channel.>", "chanlog.*.deposit-detected.>")


def wait_out(ttl: float) -> None:
    """Sleep until a lease of ``ttl`` seconds taken before the call has expired."""
    time.sleep(ttl * 1.5 + 0.05)


def parked_record(
    consumer: str, offset: int, *, attempts: int = 3, error: str = "ValueError: boom"
) -> ParkedRecord:
    """A record as a runner parks it. ``parked_at`` is 0 (1970): the backend stamps its own
    clock's time, so a backend that keeps the runner's value shows up."""
    return ParkedRecord(
        consumer,
        offset,
        "0x" + f"{offset:064x}",
        "conformance-test",
        attempts,
        error,
        parked_at=0.0,
    )


def parked_view(records: Sequence[ParkedRecord]) -> list[tuple[object, ...]]:
    """Parked records without their backend-stamped ``parked_at``, for comparisons."""
    return [
        (r.consumer, r.offset, r.event_id, r.event_type, r.attempts, r.error, r.replay)
        for r in records
    ]


class ConsumerFixtures(ConformanceFixtures):
    """The ``keeper`` fixture: the test's backend, skipping when it keeps no consumers."""

    @pytest.fixture
    def keeper(self, backend: Backend) -> KeepsConsumers:
        """The backend as a :class:`KeepsConsumers` (the test skips without it)."""
        if not isinstance(backend, KeepsConsumers):
            pytest.skip("the backend is not KeepsConsumers")
        return backend


def _held(keeper: KeepsConsumers, name: str, holder: str = "h1", position: int = 0) -> None:
    """Create ``name`` at ``position`` with ``holder`` holding a long lease."""
    keeper.ensure_consumer(name, position, SUBJECTS)
    keeper.acquire_lease(name, holder, LONG_TTL)


def _state(keeper: KeepsConsumers, name: str) -> ConsumerState:
    state = keeper.consumer_state(name)
    assert state is not None, f"consumer {name!r} is missing"
    return state


class KeepsConsumersCases(ConsumerFixtures):
    """:class:`~chanlog.backends.consumer_store.KeepsConsumers`: positions, leases and
    parked records by the rules of :mod:`chanlog.backends.consumer_store`."""

    # -- creating ----------------------------------------------------------------------------

    def test_a_new_log_keeps_no_consumers(self, keeper: KeepsConsumers) -> None:
        assert keeper.consumer_state("nobody") is None
        assert keeper.consumer_states() == []

    def test_ensure_creates_a_consumer_once_and_updates_its_subjects(
        self, keeper: KeepsConsumers
    ) -> None:
        created = keeper.ensure_consumer("audit", 3, SUBJECTS)
        assert (created.name, created.position, created.subjects) == ("audit", 3, SUBJECTS)
        assert (created.handled, created.parked, created.last_error) == (0, 0, None)
        assert (created.lease_holder, created.lease_expires_at) == (None, None)
        assert isinstance(created.updated_at, float)
        assert created.updated_at > 0
        assert keeper.consumer_state("audit") == created
        again = keeper.ensure_consumer("audit", 10, SUBJECTS)  # the position stays
        assert again == created
        changed = keeper.ensure_consumer("audit", 10, ["chanlog.>"])
        assert (changed.position, changed.subjects) == (3, ("chanlog.>",))
        assert keeper.consumer_state("audit") == changed
        assert keeper.ensure_consumer("audit", 0, []).subjects == ()

    def test_consumer_states_are_ordered_by_name(self, keeper: KeepsConsumers) -> None:
        for name in ("zeta", "Alpha", "beta", "ä"):
            keeper.ensure_consumer(name, 0, SUBJECTS)
        states = keeper.consumer_states()
        assert [state.name for state in states] == ["Alpha", "beta", "zeta", "ä"]
        assert states == [keeper.consumer_state(state.name) for state in states]

    def test_positions_must_be_ints_of_zero_or_more(self, keeper: KeepsConsumers) -> None:
        for position in (-1, 1.5, "3", True):
            with pytest.raises(InvalidArgument):
                keeper.ensure_consumer("bad", position, SUBJECTS)  # type: ignore[arg-type]
        assert keeper.consumer_state("bad") is None
        keeper.ensure_consumer("good", 0, SUBJECTS)
        with pytest.raises(InvalidArgument):
            keeper.reset_consumer("good", -1)
        assert _state(keeper, "good").position == 0

    # -- leases ------------------------------------------------------------------------------

    def test_a_lease_is_taken_renewed_and_refused_to_a_second_holder(
        self, keeper: KeepsConsumers
    ) -> None:
        keeper.ensure_consumer("lease", 0, SUBJECTS)
        taken = keeper.acquire_lease("lease", "h1", LONG_TTL)
        assert taken.lease_holder == "h1"
        assert taken.lease_expires_at is not None
        assert keeper.consumer_state("lease") == taken
        renewed = keeper.acquire_lease("lease", "h1", LONG_TTL)
        assert renewed.lease_holder == "h1"
        assert renewed.lease_expires_at is not None
        assert renewed.lease_expires_at >= taken.lease_expires_at
        with pytest.raises(LeaseHeld) as refused:
            keeper.acquire_lease("lease", "h2", LONG_TTL)
        assert refused.value.consumer == "lease"
        assert refused.value.holder == "h1"
        assert refused.value.expires_at == pytest.approx(renewed.lease_expires_at, abs=1e-3)
        assert "h1" in str(refused.value)
        assert keeper.consumer_state("lease") == renewed

    def test_an_expired_lease_goes_to_whoever_takes_it(self, keeper: KeepsConsumers) -> None:
        keeper.ensure_consumer("expiry", 0, SUBJECTS)
        first = keeper.acquire_lease("expiry", "h1", SHORT_TTL)
        assert first.lease_expires_at is not None
        wait_out(SHORT_TTL)
        second = keeper.acquire_lease("expiry", "h2", LONG_TTL)
        assert second.lease_holder == "h2"
        assert second.lease_expires_at is not None
        assert second.lease_expires_at > first.lease_expires_at
        with pytest.raises(LeaseHeld) as refused:
            keeper.acquire_lease("expiry", "h1", LONG_TTL)
        assert refused.value.holder == "h2"

    def test_the_lease_runs_for_its_ttl_from_the_backends_now(self, keeper: KeepsConsumers) -> None:
        keeper.ensure_consumer("ttl", 0, SUBJECTS)
        _held(keeper, "ttl")
        keeper.move_consumer(PositionMove("ttl", "h1", 1, lease_ttl=LONG_TTL))
        state = _state(keeper, "ttl")
        assert state.lease_expires_at is not None
        # A move stamps updated_at and renews the lease from the same clock.
        assert state.lease_expires_at - state.updated_at == pytest.approx(LONG_TTL, abs=1.0)

    def test_the_backends_clock_is_the_one_its_leases_run_by(self, keeper: KeepsConsumers) -> None:
        if not isinstance(keeper, ReadsConsumerClock):
            pytest.skip("the backend is not ReadsConsumerClock")
        keeper.ensure_consumer("clock", 0, SUBJECTS)
        before = keeper.consumer_clock()
        state = keeper.acquire_lease("clock", "h1", LONG_TTL)
        after = keeper.consumer_clock()
        assert state.lease_expires_at is not None
        assert before + LONG_TTL <= state.lease_expires_at <= after + LONG_TTL

    def test_release_gives_the_lease_up_only_for_its_holder(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "release")
        keeper.release_lease("release", "h2")  # not the holder: nothing happens
        assert _state(keeper, "release").lease_holder == "h1"
        keeper.release_lease("release", "h1")
        released = _state(keeper, "release")
        assert (released.lease_holder, released.lease_expires_at) == (None, None)
        keeper.release_lease("release", "h1")  # released already: nothing happens
        assert keeper.acquire_lease("release", "h2", LONG_TTL).lease_holder == "h2"

    # -- moves -------------------------------------------------------------------------------

    def test_a_move_by_the_holder_carries_everything_at_once(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "move", position=2)
        keeper.move_consumer(
            PositionMove(
                "move",
                "h1",
                7,
                handled=4,
                lease_ttl=LONG_TTL,
                parked=(parked_record("move", 5), parked_record("move", 3)),
                error="ValueError: boom",
            )
        )
        state = _state(keeper, "move")
        assert (state.position, state.handled, state.parked) == (7, 4, 2)
        assert (state.last_error, state.lease_holder) == ("ValueError: boom", "h1")
        parked = keeper.parked_records("move")
        assert parked_view(parked) == parked_view(
            [parked_record("move", 3), parked_record("move", 5)]
        )
        for record in parked:
            # Stamped by the backend's clock at the move, not taken from the runner.
            assert record.parked_at == pytest.approx(state.updated_at, abs=1.0)
        keeper.move_consumer(PositionMove("move", "h1", 7, handled=1))  # the same position
        state = _state(keeper, "move")
        assert (state.position, state.handled) == (7, 5)
        assert state.last_error == "ValueError: boom"  # error=None keeps the last one
        keeper.move_consumer(PositionMove("move", "h1", 7, error="NATS away"))
        assert _state(keeper, "move").last_error == "NATS away"
        keeper.move_consumer(PositionMove("move", "h1", 7, error=""))
        # error="" ends it: the latest failure still standing, a parked record's, is shown.
        assert _state(keeper, "move").last_error == "ValueError: boom"

    # -- the last error ----------------------------------------------------------------------

    def test_a_records_error_ends_when_its_record_leaves_the_parked_list(
        self, keeper: KeepsConsumers
    ) -> None:
        _held(keeper, "ends")
        five = parked_record("ends", 5, error="KeyError: 5")
        keeper.move_consumer(PositionMove("ends", "h1", 6, parked=(five,), error=five.error))
        three = parked_record("ends", 3, error="KeyError: 3")  # replayed, failed again: latest
        keeper.move_consumer(PositionMove("ends", "h1", 6, parked=(three,), error=three.error))
        eight = parked_record("ends", 8, error="KeyError: 8")
        keeper.move_consumer(PositionMove("ends", "h1", 9, parked=(eight,), error=eight.error))
        keeper.move_consumer(PositionMove("ends", "h1", 9, unparked=(5,)))
        assert _state(keeper, "ends").last_error == "KeyError: 8"  # another record's: stays
        keeper.move_consumer(PositionMove("ends", "h1", 9, unparked=(8,)))
        # The latest failure still standing: 3, parked after 5.
        assert _state(keeper, "ends").last_error == "KeyError: 3"
        keeper.move_consumer(PositionMove("ends", "h1", 9, handled=1, unparked=(3,)))
        state = _state(keeper, "ends")
        assert (state.last_error, state.parked, state.handled) == (None, 0, 1)

    def test_an_error_holding_a_nul_is_kept_with_the_nul_written_out(
        self, keeper: KeepsConsumers
    ) -> None:
        """A handler's error may quote a payload's text, NUL included; PostgreSQL's text
        cannot hold one, so every backend keeps an error with each NUL written as the four
        characters ``\\x00`` (ADR 0070), and the move is not refused."""
        _held(keeper, "nul")
        error = "ValueError: bad note 'a\x00b'"
        shown = "ValueError: bad note 'a\\x00b'"
        one = parked_record("nul", 1, error=error)
        assert one.error == shown
        keeper.move_consumer(PositionMove("nul", "h1", 2, parked=(one,), error=error))
        state = _state(keeper, "nul")
        assert (state.position, state.parked, state.last_error) == (2, 1, shown)
        assert [record.error for record in keeper.parked_records("nul")] == [shown]
        keeper.move_consumer(PositionMove("nul", "h1", 2, unparked=(1,)))
        assert _state(keeper, "nul").last_error is None  # the record's error, ended with it

    def test_a_move_with_an_error_of_its_own_keeps_it(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "own")
        one = parked_record("own", 1, error="KeyError: 1")
        keeper.move_consumer(PositionMove("own", "h1", 2, parked=(one,), error=one.error))
        keeper.move_consumer(PositionMove("own", "h1", 2, unparked=(1,), error="NATS away"))
        assert _state(keeper, "own").last_error == "NATS away"

    def test_a_reason_stays_when_a_record_leaves_the_parked_list(
        self, keeper: KeepsConsumers
    ) -> None:
        _held(keeper, "reason")
        one = parked_record("reason", 1, error="KeyError: 1")
        keeper.move_consumer(PositionMove("reason", "h1", 2, parked=(one,), error=one.error))
        keeper.move_consumer(PositionMove("reason", "h1", 2, error="NATS away"))
        keeper.move_consumer(PositionMove("reason", "h1", 2, unparked=(1,)))
        assert _state(keeper, "reason").last_error == "NATS away"
        keeper.move_consumer(PositionMove("reason", "h1", 2, error=""))
        assert _state(keeper, "reason").last_error is None  # nothing parked stands after it

    def test_a_records_error_ends_when_its_record_is_dropped(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "dropped")
        records = tuple(parked_record("dropped", o, error=f"KeyError: {o}") for o in (1, 4))
        keeper.move_consumer(
            PositionMove("dropped", "h1", 5, parked=records, error=records[-1].error)
        )
        assert keeper.drop_parked("dropped", [4]) == 1
        assert _state(keeper, "dropped").last_error == "KeyError: 1"
        keeper.move_consumer(PositionMove("dropped", "h1", 5, error="NATS away"))
        assert keeper.drop_parked("dropped") == 1
        assert _state(keeper, "dropped").last_error == "NATS away"  # not a record's: stays
        keeper.move_consumer(PositionMove("dropped", "h1", 5, error=""))
        assert _state(keeper, "dropped").last_error is None

    def test_a_parked_record_at_the_same_offset_is_replaced(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "upsert")
        keeper.move_consumer(PositionMove("upsert", "h1", 4, parked=(parked_record("upsert", 3),)))
        again = parked_record("upsert", 3, attempts=6, error="KeyError: again")
        keeper.move_consumer(PositionMove("upsert", "h1", 5, parked=(again,), error="KeyError"))
        assert parked_view(keeper.parked_records("upsert")) == parked_view([again])
        state = _state(keeper, "upsert")
        assert (state.parked, state.last_error) == (1, "KeyError")

    def test_unparked_offsets_leave_the_parked_records(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "unpark")
        parked = tuple(parked_record("unpark", offset) for offset in (1, 4, 6))
        keeper.move_consumer(PositionMove("unpark", "h1", 8, parked=parked))
        keeper.move_consumer(PositionMove("unpark", "h1", 8, handled=2, unparked=(4, 1, 99)))
        assert parked_view(keeper.parked_records("unpark")) == parked_view([parked[2]])
        state = _state(keeper, "unpark")
        assert (state.parked, state.handled) == (1, 2)

    def test_a_position_never_moves_backwards(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "forward", position=5)
        before = _state(keeper, "forward")
        with pytest.raises(InvalidArgument, match="forward"):
            keeper.move_consumer(
                PositionMove("forward", "h1", 4, handled=1, parked=(parked_record("forward", 4),))
            )
        assert keeper.consumer_state("forward") == before
        assert keeper.parked_records("forward") == []

    def test_a_move_by_another_holder_is_refused_and_changes_nothing(
        self, keeper: KeepsConsumers
    ) -> None:
        _held(keeper, "theirs")
        keeper.move_consumer(PositionMove("theirs", "h1", 2, parked=(parked_record("theirs", 1),)))
        before, parked = _state(keeper, "theirs"), keeper.parked_records("theirs")
        with pytest.raises(LeaseHeld) as refused:
            keeper.move_consumer(
                PositionMove(
                    "theirs",
                    "h2",
                    9,
                    handled=3,
                    parked=(parked_record("theirs", 5),),
                    unparked=(1,),
                    error="mine",
                )
            )
        assert (refused.value.consumer, refused.value.holder) == ("theirs", "h1")
        assert refused.value.expires_at == pytest.approx(before.lease_expires_at, abs=1e-3)
        assert keeper.consumer_state("theirs") == before
        assert keeper.parked_records("theirs") == parked

    def test_a_move_without_a_lease_or_after_it_expired_is_refused(
        self, keeper: KeepsConsumers
    ) -> None:
        keeper.ensure_consumer("lapsed", 0, SUBJECTS)
        with pytest.raises(LeaseHeld) as nobody:
            keeper.move_consumer(PositionMove("lapsed", "h1", 1, handled=1))
        assert (nobody.value.holder, nobody.value.expires_at) == (None, None)
        keeper.acquire_lease("lapsed", "h1", SHORT_TTL)
        wait_out(SHORT_TTL)
        before = _state(keeper, "lapsed")
        with pytest.raises(LeaseHeld) as expired:
            keeper.move_consumer(
                PositionMove("lapsed", "h1", 3, handled=1, parked=(parked_record("lapsed", 2),))
            )
        assert expired.value.holder is None  # nobody runs it now; this runner lost it
        assert keeper.consumer_state("lapsed") == before
        assert keeper.parked_records("lapsed") == []

    # -- admin -------------------------------------------------------------------------------

    def test_reset_is_refused_while_a_lease_runs_and_keeps_parked_records(
        self, keeper: KeepsConsumers
    ) -> None:
        _held(keeper, "reset", position=2)
        keeper.move_consumer(PositionMove("reset", "h1", 9, parked=(parked_record("reset", 4),)))
        before = _state(keeper, "reset")
        with pytest.raises(LeaseHeld) as refused:
            keeper.reset_consumer("reset", 0)
        assert refused.value.holder == "h1"
        assert keeper.consumer_state("reset") == before
        keeper.release_lease("reset", "h1")
        back = keeper.reset_consumer("reset", 1)
        assert (back.position, back.parked, back.handled) == (1, 1, before.handled)
        assert keeper.consumer_state("reset") == back
        assert parked_view(keeper.parked_records("reset")) == parked_view(
            [parked_record("reset", 4)]
        )
        assert keeper.reset_consumer("reset", 20).position == 20  # forwards too

    def test_reset_is_allowed_once_the_lease_expired(self, keeper: KeepsConsumers) -> None:
        keeper.ensure_consumer("stale", 6, SUBJECTS)
        keeper.acquire_lease("stale", "h1", SHORT_TTL)
        wait_out(SHORT_TTL)
        assert keeper.reset_consumer("stale", 0).position == 0

    def test_parked_records_are_ordered_by_offset(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "order")
        offsets = (9, 2, 40, 5, 17)
        keeper.move_consumer(
            PositionMove(
                "order", "h1", 41, parked=tuple(parked_record("order", o) for o in offsets)
            )
        )
        parked = keeper.parked_records("order")
        assert [record.offset for record in parked] == sorted(offsets)
        assert parked_view(parked) == parked_view(
            [parked_record("order", offset) for offset in sorted(offsets)]
        )
        assert keeper.parked_records(_other(keeper)) == []

    def test_request_replay_marks_the_parked_records_named(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "replay")
        keeper.move_consumer(
            PositionMove(
                "replay", "h1", 10, parked=tuple(parked_record("replay", o) for o in (2, 5, 9))
            )
        )
        assert keeper.request_replay("replay", [5, 7, 5]) == 1  # 7 is not parked
        assert [(r.offset, r.replay) for r in keeper.parked_records("replay")] == [
            (2, False),
            (5, True),
            (9, False),
        ]
        assert keeper.request_replay("replay", []) == 0
        assert keeper.request_replay("replay") == 3
        assert all(record.replay for record in keeper.parked_records("replay"))
        assert _state(keeper, "replay").parked == 3

    def test_drop_parked_forgets_the_parked_records_named(self, keeper: KeepsConsumers) -> None:
        _held(keeper, "drop")
        keeper.move_consumer(
            PositionMove(
                "drop", "h1", 10, parked=tuple(parked_record("drop", o) for o in (1, 3, 8))
            )
        )
        assert keeper.drop_parked("drop", [3, 4, 3]) == 1
        assert [record.offset for record in keeper.parked_records("drop")] == [1, 8]
        assert _state(keeper, "drop").parked == 2
        assert keeper.drop_parked("drop", []) == 0
        assert keeper.drop_parked("drop") == 2
        assert keeper.parked_records("drop") == []
        assert _state(keeper, "drop").parked == 0
        assert keeper.drop_parked("drop") == 0

    def test_delete_removes_the_consumer_and_its_parked_records(
        self, keeper: KeepsConsumers
    ) -> None:
        _held(keeper, "gone")
        keeper.ensure_consumer("kept", 4, SUBJECTS)
        keeper.move_consumer(PositionMove("gone", "h1", 3, parked=(parked_record("gone", 1),)))
        assert keeper.delete_consumer("gone") is True
        assert keeper.consumer_state("gone") is None
        assert [state.name for state in keeper.consumer_states()] == ["kept"]
        with pytest.raises(NotFound):
            keeper.parked_records("gone")
        assert keeper.delete_consumer("gone") is False
        fresh = keeper.ensure_consumer("gone", 0, SUBJECTS)  # a new consumer, from scratch
        assert (fresh.position, fresh.handled, fresh.parked, fresh.lease_holder) == (0, 0, 0, None)
        assert keeper.parked_records("gone") == []

    def test_every_method_needing_a_consumer_raises_not_found(self, keeper: KeepsConsumers) -> None:
        keeper.ensure_consumer("present", 0, SUBJECTS)
        calls: list[Callable[[], object]] = [
            lambda: keeper.acquire_lease("absent", "h1", LONG_TTL),
            lambda: keeper.release_lease("absent", "h1"),
            lambda: keeper.move_consumer(PositionMove("absent", "h1", 1)),
            lambda: keeper.reset_consumer("absent", 0),
            lambda: keeper.parked_records("absent"),
            lambda: keeper.request_replay("absent"),
            lambda: keeper.request_replay("absent", [1]),
            lambda: keeper.drop_parked("absent"),
            lambda: keeper.drop_parked("absent", [1]),
        ]
        for call in calls:
            with pytest.raises(NotFound, match="absent"):
                call()
        assert keeper.consumer_state("absent") is None
        assert [state.name for state in keeper.consumer_states()] == ["present"]
        assert keeper.delete_consumer("absent") is False


def _other(keeper: KeepsConsumers) -> str:
    """A second consumer with nothing parked (parked records are per consumer)."""
    keeper.ensure_consumer("other", 0, SUBJECTS)
    return "other"
