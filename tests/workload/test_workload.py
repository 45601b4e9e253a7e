"""The workload generator: determinism, shape, its own expectation, and the mutators."""

from __future__ import annotations

import pytest

from chanlog import EventStore, InvalidArgument, InvalidTransition
from chanlog.events import ChallengeRegistered, DepositDetected, ObjectiveRejected
from chanlog.workload import RULES, Workload, WorkloadConfig, generate, mutate


def test_same_seed_gives_byte_identical_events_and_another_seed_does_not() -> None:
    first = [e.canonical_json() for e in Workload(channels=5, turns=4, seed=11)]
    second = [e.canonical_json() for e in Workload(WorkloadConfig(channels=5, turns=4, seed=11))]
    other = [e.canonical_json() for e in generate(channels=5, turns=4, seed=12)]
    assert first == second and first != other


def test_batches_cover_the_log_in_order() -> None:
    workload = Workload(channels=3, turns=2, seed=1)
    events = workload.events()
    batches = list(workload.batches(7))
    assert [e for batch in batches for e in batch] == events
    assert all(len(b) == 7 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 7
    assert len(workload) == len(events) == workload.expectation().event_count
    with pytest.raises(InvalidArgument):
        next(workload.batches(0))


def test_config_is_validated_naming_the_field() -> None:
    for options, field in [
        ({"channels": -1}, "channels"),
        ({"participants": 1}, "participants"),
        ({"participants": 256}, "participants"),
        ({"challenge_probability": 1.5}, "challenge_probability"),
        ({"interleave": 0}, "interleave"),
        ({"seed": "x"}, "seed"),
    ]:
        with pytest.raises(InvalidArgument, match=field):
            WorkloadConfig(**options)  # type: ignore[arg-type]


def test_deposits_are_cumulative_in_outcome_order_and_chain_positions_increase() -> None:
    workload = Workload(channels=3, turns=2, seed=2, participants=3, assets=2, reject_probability=0)
    held: dict[tuple[str, str], int] = {}
    for event in workload:
        if isinstance(event, DepositDetected):
            key = (event.channel_id, event.asset)
            held[key] = held.get(key, 0) + event.amount_deposited
            assert event.now_held == held[key]
    plan = workload.plans[0]
    deposits = [
        e.amount_deposited
        for e in workload
        if isinstance(e, DepositDetected) and e.channel_id == plan.channel_id
    ]
    assert deposits == [amount for amounts in plan.outcome for amount in amounts]


def test_rejections_challenges_and_stale_challenges_all_occur() -> None:
    workload = Workload(
        channels=40, turns=4, seed=3, reject_probability=0.2, challenge_probability=0.6
    )
    events = workload.events()
    assert any(isinstance(e, ObjectiveRejected) for e in events)
    assert any(isinstance(e, ChallengeRegistered) for e in events)
    store = EventStore()
    store.append_batch(events)
    stale = [
        p for p in workload.plans if p.challenge_after is not None and p.stale and not p.rejected
    ]
    assert stale and workload.expectation().mismatches(store) == []


@pytest.mark.parametrize("rule", RULES)
def test_each_mutation_is_refused_naming_its_rule_and_leaves_the_log_unchanged(rule: str) -> None:
    events = Workload(channels=2, turns=3, seed=4, reject_probability=0).events()
    mutation = mutate(events, rule)
    store = EventStore()
    store.append_batch(mutation.events[: mutation.index])  # everything before it is legal
    length, head = len(store), store.backend.head()
    dumps = {name: p.dump() for name, p in store.projections.items()}
    with pytest.raises(InvalidTransition) as raised:
        store.append_batch(mutation.events[mutation.index :])
    error = raised.value
    assert (error.rule, error.kind, error.entity_id, error.index) == (
        rule,
        mutation.kind,
        mutation.entity_id,
        0,
    )
    assert len(store) == length and store.backend.head() == head
    assert {name: p.dump() for name, p in store.projections.items()} == dumps
    store.verify()
    # And as one batch from an empty store: refused whole, at the mutated index.
    empty = EventStore()
    with pytest.raises(InvalidTransition) as whole:
        empty.append_batch(mutation.events)
    assert whole.value.index == mutation.index and len(empty) == 0


def test_every_rule_has_a_mutator_and_unknown_rules_are_refused() -> None:
    assert len(RULES) == 27
    with pytest.raises(InvalidArgument, match="no mutator"):
        mutate([], "channel.nope")
    with pytest.raises(InvalidArgument, match="no suitable"):
        mutate([], "channel.closed")


@pytest.mark.slow
def test_hundred_channels_by_hundred_turns_append_and_match_the_expectation() -> None:
    workload = Workload(channels=100, turns=100, seed=2026)
    store = EventStore()
    for batch in workload.batches(5000):
        store.append_batch(batch)
    expectation = workload.expectation()
    assert len(store) == expectation.event_count > 30_000
    assert expectation.mismatches(store) == []  # live projections
    assert expectation.mismatches(store, at=len(store)) == []  # folded from the log
