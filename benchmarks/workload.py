"""The events every benchmark appends: the traffic of two-party state channels.

A channel's life is a ``channel-created`` followed by turns, and every turn is the three
events a node writes for it (ADR 0020): ``state-signed`` (our signature on the turn's
state), ``state-received`` (the peer's signature on the same state) and
``state-supported-updated`` (both have signed: the turn is supported, and the signatures of
older turns are pruned). The eventsourcing peer gets exactly the same facts (see
:mod:`benchmarks.peer_eventsourcing`), so both sides store and fold the same events.

:func:`signed_state` alone, turn after turn with no counter-signature, is the degenerate
channel whose peer never answers: nothing is ever supported, so nothing is pruned. The
stress figures use it on purpose. Everything is deterministic: an index fully determines its
event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from chanlog import ChannelCreated, Event, StateReceived, StateSigned, StateSupportedUpdated

__all__ = [
    "CHALLENGE_DURATION_S",
    "EVENTS_PER_TURN",
    "OUR_ADDRESS",
    "PEER_ADDRESS",
    "channel_created",
    "channel_event",
    "channel_events",
    "channel_id",
    "log_events",
    "signed_state",
    "signed_states",
    "state_fields",
    "timestamp",
    "turn_of",
]

OUR_ADDRESS = "0x" + "a1" * 20
PEER_ADDRESS = "0x" + "b2" * 20
CHALLENGE_DURATION_S = 86_400
EVENTS_PER_TURN = 3
"""``state-signed``, ``state-received``, ``state-supported-updated``."""


def channel_id(number: int) -> str:
    """The id of background channel ``number`` (distinct numbers, distinct ids)."""
    return f"0x{number:064x}"


def channel_created(cid: str, timestamp_ms: int = 0) -> ChannelCreated:
    """A two-party channel between us and the peer."""
    return ChannelCreated(
        channel_id=cid,
        participants=(OUR_ADDRESS, PEER_ADDRESS),
        challenge_duration=CHALLENGE_DURATION_S,
        timestamp_ms=timestamp_ms,
    )


def state_fields(turn: int, signer: str = OUR_ADDRESS) -> tuple[str, str]:
    """The ``(state_hash, signature)`` of a turn: distinct per turn and signer, realistic
    sizes (a bytes32 hash, a 65-byte signature)."""
    party = 1 if signer == OUR_ADDRESS else 2
    return f"0x{turn:064x}", f"0x{party:02x}{turn:0128x}"


def timestamp(turn: int) -> int:
    """The ``timestamp_ms`` of every event of ``turn``."""
    return 1_700_000_000_000 + turn


_Signature = TypeVar("_Signature", StateSigned, StateReceived)


def _signature_event(kind: type[_Signature], cid: str, turn: int, signer: str) -> _Signature:
    """``signer``'s signature on the channel's state at ``turn``, as a ``kind`` event."""
    state_hash, signature = state_fields(turn, signer)
    return kind(
        channel_id=cid,
        turn_num=turn,
        state_hash=state_hash,
        signer=signer,
        signature=signature,
        timestamp_ms=timestamp(turn),
    )


def signed_state(cid: str, turn: int) -> StateSigned:
    """Our signature on the channel's state at ``turn``."""
    return _signature_event(StateSigned, cid, turn, OUR_ADDRESS)


def signed_states(cid: str, first_turn: int, count: int) -> list[StateSigned]:
    """``count`` consecutive turns from ``first_turn``, signed by us only (never supported)."""
    return [signed_state(cid, turn) for turn in range(first_turn, first_turn + count)]


def turn_of(index: int) -> tuple[int, int]:
    """``(turn, step)`` of a channel's event ``index >= 1``: step 0 signs, 1 receives the
    peer's signature, 2 marks the turn supported."""
    turn, step = divmod(index - 1, EVENTS_PER_TURN)
    return turn + 1, step


def channel_event(cid: str, index: int) -> Event:
    """The channel's event ``index``: 0 creates it, then three per turn (see the module)."""
    if index == 0:
        return channel_created(cid)
    turn, step = turn_of(index)
    if step == 0:
        return signed_state(cid, turn)
    if step == 1:
        return _signature_event(StateReceived, cid, turn, PEER_ADDRESS)
    return StateSupportedUpdated(
        channel_id=cid,
        supported_turn=turn,
        state_hash=state_fields(turn)[0],
        num_signatures=2,
        prev_supported_turn=turn - 1 if turn > 1 else None,
        timestamp_ms=timestamp(turn),
    )


def channel_events(cid: str, first: int, count: int) -> list[Event]:
    """The channel's events ``first .. first + count - 1``."""
    return [channel_event(cid, index) for index in range(first, first + count)]


def log_events(
    total: int, target: str, target_events: int, *, channel_size: int = 1_000
) -> Iterator[Event]:
    """A log of ``total`` events in which channel ``target`` has ``target_events`` events
    spread evenly from start to end; the rest is background channels of ``channel_size``
    events each. Spreading the target over the whole log is the hard case for "cost does
    not depend on the log's length": a store that scans would pay for every event.
    """
    if not 1 <= target_events <= total:
        raise ValueError(f"target_events must be in [1, {total}], got {target_events}")
    stride = total / target_events
    next_target = 0.0
    target_turn = 0
    background = 0
    background_turn = channel_size  # forces a new background channel first
    for position in range(total):
        if position >= next_target and target_turn < target_events:
            yield (
                channel_created(target, position)
                if target_turn == 0
                else channel_event(target, target_turn)
            )
            target_turn += 1
            next_target += stride
            continue
        if background_turn >= channel_size:
            background += 1
            background_turn = 0
            yield channel_created(channel_id(background), position)
        else:
            yield channel_event(channel_id(background), background_turn)
        background_turn += 1
