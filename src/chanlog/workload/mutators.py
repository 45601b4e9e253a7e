"""One mutator per rule of DESIGN section 4: each turns a valid generated log into one whose
first illegal event breaks exactly that rule.

A mutator inserts (or, for one rule, replaces) the fewest events that produce the violation;
everything before ``Mutation.index`` stays legal. Mutators need a log with at least one
channel that was funded and defunded (``reject_probability=0`` guarantees it)::

    events = Workload(channels=2, turns=3, reject_probability=0).events()
    mutation = mutate(events, "channel.stale-turn")
    store.append_batch(mutation.events)   # raises InvalidTransition(rule="channel.stale-turn")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from chanlog.errors import InvalidArgument
from chanlog.events import (
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    ChannelCreated,
    ChannelFinalized,
    DepositDetected,
    Event,
    MessageAcked,
    MessageSent,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
    WithdrawCompleted,
)
from chanlog.hashing import keccak256

__all__ = ["MUTATORS", "RULES", "Mutation", "mutate"]

E = TypeVar("E", bound=Event)


@attrs.frozen(kw_only=True)
class Mutation:
    """A mutated log: ``events[index]`` is its first illegal event; it breaks ``rule`` of
    the ``kind`` projection for ``entity_id`` (lower-cased)."""

    events: list[Event]
    index: int
    rule: str
    kind: str
    entity_id: str


_STRANGER = "0x" + keccak256(b"chanlog-mutant|stranger")[-20:].hex()
_SIGNATURE = "0x" + "5a" * 65


def _mutant_id(label: str) -> str:
    return "0x" + keccak256(f"chanlog-mutant|{label}".encode()).hex()


def _find(
    events: Sequence[Event], cls: type[E], where: Callable[[E], bool] = lambda _: True
) -> int:
    for index, event in enumerate(events):
        if type(event) is cls and where(event):
            return index
    raise InvalidArgument(
        f"the log has no suitable {cls.event_type} to mutate (generate it with "
        "reject_probability=0 and turns >= 1)"
    )


def _later(event: E, **changes: Any) -> E:
    """A copy one millisecond later (a different event id, so not an idempotent repeat)."""
    return attrs.evolve(event, timestamp_ms=event.timestamp_ms + 1, **changes)


def _inserted(events: Sequence[Event], index: int, *new: Event) -> list[Event]:
    return [*events[:index], *new, *events[index:]]


def _position(events: Sequence[Event], channel: str, before: int) -> tuple[int, int]:
    """The chain position of the channel's last chain event before ``before``; inserting
    at ``(block, tx_index + k)`` stays below the next one (the generator gives each chain
    event its own block)."""
    for event in reversed(events[:before]):
        if isinstance(event, ChainEvent) and event.channel_id == channel:
            return event.block_num, event.tx_index
    return 0, 0


def _participants(events: Sequence[Event], channel: str) -> tuple[str, ...]:
    created = events[_find(events, ChannelCreated, lambda e: e.channel_id == channel)]
    assert isinstance(created, ChannelCreated)
    return created.participants


def _ts(events: Sequence[Event], index: int) -> int:
    return events[index].timestamp_ms


def _mutation(events: list[Event], index: int, rule: str, entity_id: str) -> Mutation:
    kind = rule.split(".", 1)[0]
    return Mutation(events=events, index=index, rule=rule, kind=kind, entity_id=entity_id.lower())


# -- objective ---------------------------------------------------------------------------


def _objective_requires_created(events: Sequence[Event]) -> Mutation:
    ghost = _mutant_id("ghost-objective")
    mutant = ObjectiveApproved(objective_id=ghost, timestamp_ms=_ts(events, 0))
    return _mutation(_inserted(events, 1, mutant), 1, "objective.requires-created", ghost)


def _duplicate(events: Sequence[Event], cls: type[E], rule: str, entity: str) -> Mutation:
    index = _find(events, cls)
    original = events[index]
    mutant = _later(original)
    return _mutation(
        _inserted(events, index + 1, mutant), index + 1, rule, getattr(original, entity)
    )


def _objective_created_once(events: Sequence[Event]) -> Mutation:
    return _duplicate(events, ObjectiveCreated, "objective.created-once", "objective_id")


def _objective_approve_requires_unapproved(events: Sequence[Event]) -> Mutation:
    return _duplicate(
        events, ObjectiveApproved, "objective.approve-requires-unapproved", "objective_id"
    )


def _before_approval(
    events: Sequence[Event], mutant: Callable[[str, int], Event], rule: str
) -> Mutation:
    index = _find(events, ObjectiveCreated)
    created = events[index]
    assert isinstance(created, ObjectiveCreated)
    event = mutant(created.objective_id, created.timestamp_ms + 1)
    return _mutation(_inserted(events, index + 1, event), index + 1, rule, created.objective_id)


def _objective_crank_requires_approved(events: Sequence[Event]) -> Mutation:
    return _before_approval(
        events,
        lambda oid, ts: ObjectiveCranked(objective_id=oid, side_effects_count=0, timestamp_ms=ts),
        "objective.crank-requires-approved",
    )


def _objective_complete_requires_approved(events: Sequence[Event]) -> Mutation:
    return _before_approval(
        events,
        lambda oid, ts: ObjectiveCompleted(objective_id=oid, success=False, timestamp_ms=ts),
        "objective.complete-requires-approved",
    )


def _objective_terminal(events: Sequence[Event]) -> Mutation:
    index = _find(events, ObjectiveCompleted)
    done = events[index]
    assert isinstance(done, ObjectiveCompleted)
    mutant = ObjectiveCranked(
        objective_id=done.objective_id, side_effects_count=1, timestamp_ms=done.timestamp_ms + 1
    )
    return _mutation(
        _inserted(events, index + 1, mutant), index + 1, "objective.terminal", done.objective_id
    )


def _objective_channel_owned(events: Sequence[Event]) -> Mutation:
    index = _find(events, ObjectiveApproved)
    approved = events[index]
    created = events[
        _find(events, ObjectiveCreated, lambda e: e.objective_id == approved.objective_id)  # type: ignore[attr-defined]
    ]
    assert isinstance(created, ObjectiveCreated)
    assert created.channel_id is not None
    rival = _mutant_id("rival-objective")
    ts = approved.timestamp_ms
    mutants = (
        ObjectiveCreated(
            objective_id=rival,
            objective_type="DirectDefund",
            channel_id=created.channel_id,
            participants=created.participants,
            timestamp_ms=ts,
        ),
        ObjectiveApproved(objective_id=rival, timestamp_ms=ts),
    )
    return _mutation(
        _inserted(events, index + 1, *mutants), index + 2, "objective.channel-owned", rival
    )


# -- channel: off-chain states -----------------------------------------------------------


def _channel_requires_created(events: Sequence[Event]) -> Mutation:
    ghost = _mutant_id("ghost-channel")
    mutant = StateSigned(
        channel_id=ghost,
        turn_num=0,
        state_hash=_mutant_id("ghost-state"),
        signer=_STRANGER,
        signature=_SIGNATURE,
        timestamp_ms=_ts(events, 0),
    )
    return _mutation(_inserted(events, 1, mutant), 1, "channel.requires-created", ghost)


def _channel_created_once(events: Sequence[Event]) -> Mutation:
    return _duplicate(events, ChannelCreated, "channel.created-once", "channel_id")


def _after_signed(events: Sequence[Event], rule: str, **changes: Any) -> Mutation:
    index = _find(events, StateSigned)
    signed = events[index]
    assert isinstance(signed, StateSigned)
    mutant = StateReceived(
        channel_id=signed.channel_id,
        turn_num=signed.turn_num,
        state_hash=changes.pop("state_hash", signed.state_hash),
        signer=changes.pop("signer"),
        signature=_SIGNATURE,
        timestamp_ms=signed.timestamp_ms + 1,
    )
    return _mutation(_inserted(events, index + 1, mutant), index + 1, rule, signed.channel_id)


def _channel_signer_not_participant(events: Sequence[Event]) -> Mutation:
    return _after_signed(events, "channel.signer-not-participant", signer=_STRANGER)


def _channel_conflicting_state_hash(events: Sequence[Event]) -> Mutation:
    signed = events[_find(events, StateSigned)]
    assert isinstance(signed, StateSigned)
    peer = _participants(events, signed.channel_id)[1]
    return _after_signed(
        events,
        "channel.conflicting-state-hash",
        signer=peer,
        state_hash=_mutant_id("conflicting-state"),
    )


def _channel_duplicate_signer(events: Sequence[Event]) -> Mutation:
    return _duplicate(events, StateSigned, "channel.duplicate-signer", "channel_id")


def _postfund(events: Sequence[Event]) -> tuple[int, StateSupportedUpdated]:
    index = _find(events, StateSupportedUpdated, lambda e: e.supported_turn >= 1)
    supported = events[index]
    assert isinstance(supported, StateSupportedUpdated)
    return index, supported


def _channel_stale_turn(events: Sequence[Event]) -> Mutation:
    index, supported = _postfund(events)
    peer = _participants(events, supported.channel_id)[1]
    mutant = StateReceived(
        channel_id=supported.channel_id,
        turn_num=supported.supported_turn - 1,
        state_hash=_mutant_id("stale-state"),
        signer=peer,
        signature=_SIGNATURE,
        timestamp_ms=supported.timestamp_ms + 1,
    )
    return _mutation(
        _inserted(events, index + 1, mutant), index + 1, "channel.stale-turn", supported.channel_id
    )


def _channel_supported_must_increase(events: Sequence[Event]) -> Mutation:
    return _duplicate(
        events, StateSupportedUpdated, "channel.supported-turn-must-increase", "channel_id"
    )


def _channel_prev_supported_mismatch(events: Sequence[Event]) -> Mutation:
    index, supported = _postfund(events)
    mutant = attrs.evolve(supported, prev_supported_turn=None)
    mutated = list(events)
    mutated[index] = mutant
    return _mutation(mutated, index, "channel.prev-supported-mismatch", supported.channel_id)


def _channel_closed(events: Sequence[Event]) -> Mutation:
    index = _find(events, ChannelFinalized)
    final = events[index]
    assert isinstance(final, ChannelFinalized)
    mutant = StateSigned(
        channel_id=final.channel_id,
        turn_num=final.final_turn + 1,
        state_hash=_mutant_id("after-final"),
        signer=_participants(events, final.channel_id)[0],
        signature=_SIGNATURE,
        timestamp_ms=final.timestamp_ms + 1,
    )
    return _mutation(
        _inserted(events, index + 1, mutant), index + 1, "channel.closed", final.channel_id
    )


# -- channel: on-chain facts -------------------------------------------------------------


def _channel_chain_order(events: Sequence[Event]) -> Mutation:
    return _duplicate(events, DepositDetected, "channel.chain-order", "channel_id")


def _channel_now_held_mismatch(events: Sequence[Event]) -> Mutation:
    index = _find(events, DepositDetected, lambda e: e.now_held is not None)
    deposit = events[index]
    assert isinstance(deposit, DepositDetected)
    assert deposit.now_held is not None
    mutant = _later(
        deposit,
        tx_index=deposit.tx_index + 1,
        amount_deposited=1,
        now_held=deposit.now_held + 2,
    )
    return _mutation(
        _inserted(events, index + 1, mutant),
        index + 1,
        "channel.now-held-mismatch",
        deposit.channel_id,
    )


def _on_chain_after_postfund(
    events: Sequence[Event],
    rule: str,
    build: Callable[[StateSupportedUpdated, int, int], list[Event]],
) -> Mutation:
    index, supported = _postfund(events)
    block, tx = _position(events, supported.channel_id, index + 1)
    mutants = build(supported, block, tx)
    return _mutation(
        _inserted(events, index + 1, *mutants),
        index + len(mutants),
        rule,
        supported.channel_id,
    )


def _challenge(supported: StateSupportedUpdated, block: int, tx: int, record: int) -> Event:
    return ChallengeRegistered(
        channel_id=supported.channel_id,
        block_num=block,
        tx_index=tx,
        turn_num_record=record,
        finalization_time=supported.timestamp_ms // 1000 + 86_400,
        challenger=_STRANGER,
        timestamp_ms=supported.timestamp_ms + 1,
    )


def _channel_challenge_must_raise_record(events: Sequence[Event]) -> Mutation:
    return _on_chain_after_postfund(
        events,
        "channel.challenge-must-raise-record",
        lambda s, block, tx: [
            _challenge(s, block, tx + 1, s.supported_turn),
            _challenge(s, block, tx + 2, s.supported_turn),
        ],
    )


def _cleared(supported: StateSupportedUpdated, block: int, tx: int, record: int) -> Event:
    return ChallengeCleared(
        channel_id=supported.channel_id,
        block_num=block,
        tx_index=tx,
        new_turn_num_record=record,
        timestamp_ms=supported.timestamp_ms + 2,
    )


def _channel_clear_requires_challenge(events: Sequence[Event]) -> Mutation:
    return _on_chain_after_postfund(
        events,
        "channel.clear-requires-challenge",
        lambda s, block, tx: [_cleared(s, block, tx + 1, s.supported_turn + 1)],
    )


def _channel_clear_must_raise_record(events: Sequence[Event]) -> Mutation:
    return _on_chain_after_postfund(
        events,
        "channel.clear-must-raise-record",
        lambda s, block, tx: [
            _challenge(s, block, tx + 1, s.supported_turn),
            _cleared(s, block, tx + 2, s.supported_turn),
        ],
    )


def _channel_concluded_once(events: Sequence[Event]) -> Mutation:
    index = _find(events, ChannelConcluded)
    concluded = events[index]
    assert isinstance(concluded, ChannelConcluded)
    mutant = _later(concluded, tx_index=concluded.tx_index + 1)
    return _mutation(
        _inserted(events, index + 1, mutant),
        index + 1,
        "channel.concluded-once",
        concluded.channel_id,
    )


def _withdrawal(
    events: Sequence[Event], channel: str, index: int, block: int, tx: int, amount: int
) -> WithdrawCompleted:
    deposit = events[_find(events, DepositDetected, lambda e: e.channel_id == channel)]
    assert isinstance(deposit, DepositDetected)
    return WithdrawCompleted(
        channel_id=channel,
        block_num=block,
        tx_index=tx,
        recipient=_participants(events, channel)[0],
        asset=deposit.asset,
        amount=amount,
        timestamp_ms=events[index].timestamp_ms + 1,
    )


def _channel_withdraw_before_conclusion(events: Sequence[Event]) -> Mutation:
    index, supported = _postfund(events)
    channel = supported.channel_id
    block, tx = _position(events, channel, index + 1)
    mutant = _withdrawal(events, channel, index, block, tx + 1, 1)
    return _mutation(
        _inserted(events, index + 1, mutant),
        index + 1,
        "channel.withdraw-before-conclusion",
        channel,
    )


def _channel_withdraw_exceeds_deposit(events: Sequence[Event]) -> Mutation:
    index = _find(events, ChannelConcluded)
    concluded = events[index]
    assert isinstance(concluded, ChannelConcluded)
    channel = concluded.channel_id
    first = events[_find(events, DepositDetected, lambda e: e.channel_id == channel)]
    assert isinstance(first, DepositDetected)
    deposited = sum(
        e.amount_deposited
        for e in events[:index]
        if isinstance(e, DepositDetected) and e.channel_id == channel and e.asset == first.asset
    )
    mutant = _withdrawal(
        events, channel, index, concluded.block_num, concluded.tx_index + 1, deposited + 1
    )
    return _mutation(
        _inserted(events, index + 1, mutant),
        index + 1,
        "channel.withdraw-exceeds-deposit",
        channel,
    )


# -- messages ----------------------------------------------------------------------------


def _messages_ack_unknown(events: Sequence[Event]) -> Mutation:
    ghost = _mutant_id("ghost-message")
    mutant = MessageAcked(message_id=ghost, peer_id="peer-1", timestamp_ms=_ts(events, 0))
    return _mutation(_inserted(events, 1, mutant), 1, "messages.ack-unknown", ghost)


def _messages_ack_once(events: Sequence[Event]) -> Mutation:
    return _duplicate(events, MessageAcked, "messages.ack-once", "message_id")


def _messages_sent_requires_objective(events: Sequence[Event]) -> Mutation:
    message = _mutant_id("orphan-message")
    mutant = MessageSent(
        message_id=message,
        peer_id="peer-1",
        objective_id=_mutant_id("unknown-objective"),
        timestamp_ms=_ts(events, 0),
    )
    return _mutation(_inserted(events, 1, mutant), 1, "messages.sent-requires-objective", message)


MUTATORS: dict[str, Callable[[Sequence[Event]], Mutation]] = {
    "objective.requires-created": _objective_requires_created,
    "objective.created-once": _objective_created_once,
    "objective.approve-requires-unapproved": _objective_approve_requires_unapproved,
    "objective.crank-requires-approved": _objective_crank_requires_approved,
    "objective.complete-requires-approved": _objective_complete_requires_approved,
    "objective.terminal": _objective_terminal,
    "objective.channel-owned": _objective_channel_owned,
    "channel.requires-created": _channel_requires_created,
    "channel.created-once": _channel_created_once,
    "channel.signer-not-participant": _channel_signer_not_participant,
    "channel.stale-turn": _channel_stale_turn,
    "channel.conflicting-state-hash": _channel_conflicting_state_hash,
    "channel.duplicate-signer": _channel_duplicate_signer,
    "channel.supported-turn-must-increase": _channel_supported_must_increase,
    "channel.prev-supported-mismatch": _channel_prev_supported_mismatch,
    "channel.closed": _channel_closed,
    "channel.chain-order": _channel_chain_order,
    "channel.now-held-mismatch": _channel_now_held_mismatch,
    "channel.challenge-must-raise-record": _channel_challenge_must_raise_record,
    "channel.clear-requires-challenge": _channel_clear_requires_challenge,
    "channel.clear-must-raise-record": _channel_clear_must_raise_record,
    "channel.concluded-once": _channel_concluded_once,
    "channel.withdraw-before-conclusion": _channel_withdraw_before_conclusion,
    "channel.withdraw-exceeds-deposit": _channel_withdraw_exceeds_deposit,
    "messages.ack-unknown": _messages_ack_unknown,
    "messages.ack-once": _messages_ack_once,
    "messages.sent-requires-objective": _messages_sent_requires_objective,
}
"""Rule id → mutator. Every rule the built-in projections enforce is a key."""

RULES: tuple[str, ...] = tuple(MUTATORS)


def mutate(events: Sequence[Event], rule: str) -> Mutation:
    """Apply the mutator of ``rule`` to a valid log (the input is not modified).

    Raises:
        InvalidArgument: no mutator for ``rule``, or the log lacks what it needs.
    """
    mutator = MUTATORS.get(rule)
    if mutator is None:
        raise InvalidArgument(f"no mutator for rule {rule!r}; known: {', '.join(RULES)}")
    return mutator(list(events))
