"""Small, readable sample events shared by the test suites."""

from __future__ import annotations

from chanlog import ChannelCreated, StateSigned

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


def thread_channel(thread: int) -> str:
    """The channel id a test's appending thread ``thread`` uses (one per thread)."""
    return "0x" + f"{thread + 16:02x}" * 32


def thread_channels_created(threads: int) -> list[ChannelCreated]:
    """The channel of each of ``threads`` appending threads, created (``SIGNER`` signs)."""
    return [
        ChannelCreated(
            channel_id=thread_channel(thread),
            participants=(SIGNER, "0x" + "12" * 20),
            challenge_duration=60,
            timestamp_ms=1,
        )
        for thread in range(threads)
    ]
