"""The events every benchmark appends: state-signed-like channel traffic.

One channel's life is a ``channel-created`` followed by one ``state-signed`` per turn, signed
by our participant. The eventsourcing peer gets exactly the same fields (see
:mod:`benchmarks.peer_eventsourcing`), so both sides store and fold the same facts.
Everything is deterministic: a turn number fully determines its event.
"""

from __future__ import annotations

from collections.abc import Iterator

from chanlog import ChannelCreated, Event, StateSigned

__all__ = [
    "CHALLENGE_DURATION_S",
    "OUR_ADDRESS",
    "PEER_ADDRESS",
    "channel_created",
    "channel_id",
    "log_events",
    "signed_state",
    "signed_states",
    "state_fields",
]

OUR_ADDRESS = "0x" + "a1" * 20
PEER_ADDRESS = "0x" + "b2" * 20
CHALLENGE_DURATION_S = 86_400


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


def state_fields(turn: int) -> tuple[str, str]:
    """The ``(state_hash, signature)`` of a turn: distinct per turn, realistic sizes."""
    return f"0x{turn:064x}", f"0x{turn:0130x}"


def signed_state(cid: str, turn: int) -> StateSigned:
    """Our signature on the channel's state at ``turn``."""
    state_hash, signature = state_fields(turn)
    return StateSigned(
        channel_id=cid,
        turn_num=turn,
        state_hash=state_hash,
        signer=OUR_ADDRESS,
        signature=signature,
        timestamp_ms=1_700_000_000_000 + turn,
    )


def signed_states(cid: str, first_turn: int, count: int) -> list[StateSigned]:
    """``count`` consecutive turns from ``first_turn``."""
    return [signed_state(cid, turn) for turn in range(first_turn, first_turn + count)]


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
            if target_turn == 0:
                yield channel_created(target, position)
            else:
                yield signed_state(target, target_turn)
            target_turn += 1
            next_target += stride
            continue
        if background_turn >= channel_size:
            background += 1
            background_turn = 0
            yield channel_created(channel_id(background), position)
        else:
            yield signed_state(channel_id(background), background_turn)
        background_turn += 1
