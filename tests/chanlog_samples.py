"""Small, readable sample events shared by the test suites."""

from __future__ import annotations

from chanlog import StateSigned

CHANNEL = "0x" + "c1" * 32
SIGNER = "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0"


def make_signed(turn: int, channel: str = CHANNEL) -> StateSigned:
    """A distinct state-signed event per (turn, channel)."""
    return StateSigned(
        channel_id=channel,
        turn_num=turn,
        state_hash="0x" + f"{turn:064x}",
        signer=SIGNER,
        signature="0x" + "ab" * 65,
        timestamp_ms=1_700_000_000_000 + turn,
    )
