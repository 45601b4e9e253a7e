"""The story ``chanlog demo`` tells: one DirectFund objective funding one channel.

Fixed ids and timestamps make the demo's output the same on every run (and in the docs).
"""

from __future__ import annotations

from chanlog.events import (
    ChannelCreated,
    DepositDetected,
    Event,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
)
from chanlog.hashing import keccak256

__all__ = ["ALICE", "BOB", "CHANNEL_ID", "OBJECTIVE_ID", "TIME_TRAVEL_OFFSET", "demo_events"]


def _bytes32(label: str) -> str:
    return "0x" + keccak256(label.encode()).hex()


ALICE = "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0"
BOB = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
ETH = "0x" + "00" * 20
OBJECTIVE_ID = _bytes32("chanlog demo objective")
CHANNEL_ID = _bytes32("chanlog demo channel")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ONE_ETH = 10**18

TIME_TRAVEL_OFFSET = 6
"""The demo's earlier offset: the prefund state is supported, no deposit has arrived yet."""


def _state_hash(turn: int) -> str:
    return _bytes32(f"chanlog demo state {turn}")


def _signature(signer: str, turn: int) -> str:
    return "0x" + (keccak256(f"{signer}{turn}".encode()) * 3).hex()[:130]


def demo_events() -> list[Event]:
    """The objective lifecycle, in log order, with a second between events."""
    events: list[Event] = []

    def at(step: int) -> int:
        return START_MS + step * 1000

    def signatures(turn: int, step: int) -> list[Event]:
        return [
            StateSigned(
                channel_id=CHANNEL_ID,
                turn_num=turn,
                state_hash=_state_hash(turn),
                signer=ALICE,
                signature=_signature(ALICE, turn),
                timestamp_ms=at(step),
            ),
            StateReceived(
                channel_id=CHANNEL_ID,
                turn_num=turn,
                state_hash=_state_hash(turn),
                signer=BOB,
                signature=_signature(BOB, turn),
                peer_id="bob",
                timestamp_ms=at(step + 1),
            ),
            StateSupportedUpdated(
                channel_id=CHANNEL_ID,
                supported_turn=turn,
                state_hash=_state_hash(turn),
                num_signatures=2,
                prev_supported_turn=None if turn == 0 else turn - 1,
                timestamp_ms=at(step + 2),
            ),
        ]

    events.append(
        ObjectiveCreated(
            objective_id=OBJECTIVE_ID,
            objective_type="DirectFund",
            channel_id=CHANNEL_ID,
            participants=(ALICE, BOB),
            timestamp_ms=at(0),
        )
    )
    events.append(
        ChannelCreated(
            channel_id=CHANNEL_ID,
            participants=(ALICE, BOB),
            channel_nonce=1,
            challenge_duration=86_400,
            timestamp_ms=at(1),
        )
    )
    events.append(ObjectiveApproved(objective_id=OBJECTIVE_ID, approver=ALICE, timestamp_ms=at(2)))
    events.extend(signatures(0, 3))
    for position, (block, total) in enumerate(((100, ONE_ETH), (101, 2 * ONE_ETH))):
        events.append(
            DepositDetected(
                channel_id=CHANNEL_ID,
                block_num=block,
                tx_index=0,
                asset=ETH,
                amount_deposited=ONE_ETH,
                now_held=total,
                timestamp_ms=at(6 + position),
            )
        )
    events.append(
        ObjectiveCranked(objective_id=OBJECTIVE_ID, side_effects_count=2, timestamp_ms=at(8))
    )
    events.extend(signatures(1, 9))
    events.append(
        ObjectiveCompleted(
            objective_id=OBJECTIVE_ID,
            success=True,
            final_channel_state=_state_hash(1),
            timestamp_ms=at(12),
        )
    )
    return events
