"""The peer: the same channel traffic through the ``eventsourcing`` library (9.5.6).

A ``Channel`` aggregate takes ``channel-created`` and ``state-signed`` with the same fields as
chanlog's events, and checks the same rule chanlog's channel projection checks for them
(the signer must be a participant; a turn below the supported one is stale) before it
triggers the event, the way an eventsourcing command method validates.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks.workload import (
    CHALLENGE_DURATION_S,
    OUR_ADDRESS,
    PEER_ADDRESS,
    state_fields,
)

__all__ = ["Channel", "ChannelApp", "make_app", "new_channel", "sign"]


class Channel(Aggregate):
    """A two-party channel as an eventsourcing aggregate."""

    @event("Created")
    def __init__(self, channel_id: str, participants: list[str], challenge_duration: int) -> None:
        self.channel_id = channel_id
        self.participants = list(participants)
        self.challenge_duration = challenge_duration
        self.latest_turn: int | None = None
        self.supported_turn: int | None = None
        # Turn (as a string) → signers: JSON-ready, so the aggregate can be snapshotted.
        self.signers: dict[str, list[str]] = {}

    def sign_state(
        self, turn_num: int, state_hash: str, signer: str, signature: str, timestamp_ms: int
    ) -> None:
        """Validate, then record our signature on a state (one ``StateSigned`` event)."""
        if signer.lower() not in {p.lower() for p in self.participants}:
            raise ValueError(f"signer {signer} is not a participant")
        if self.supported_turn is not None and turn_num < self.supported_turn:
            raise ValueError(f"turn {turn_num} is stale")
        self._state_signed(
            turn_num=turn_num,
            state_hash=state_hash,
            signer=signer,
            signature=signature,
            timestamp_ms=timestamp_ms,
        )

    @event("StateSigned")
    def _state_signed(
        self, turn_num: int, state_hash: str, signer: str, signature: str, timestamp_ms: int
    ) -> None:
        if self.latest_turn is None or turn_num > self.latest_turn:
            self.latest_turn = turn_num
        signers = self.signers.setdefault(str(turn_num), [])
        if signer.lower() not in signers:
            signers.append(signer.lower())


class ChannelApp(Application[uuid.UUID]):
    """The application the peer saves through."""


class SnapshottingChannelApp(ChannelApp):
    """The same application with snapshotting enabled (``take_snapshot`` is called by the
    benchmark at the intervals chanlog's policy uses)."""

    is_snapshotting_enabled = True


def make_app(
    persistence: str = "popo",
    *,
    snapshots: bool = False,
    env: Mapping[str, str] | None = None,
) -> ChannelApp:
    """An application on ``popo`` (in memory) or ``sqlite`` persistence.

    Args:
        env: extra environment, e.g. ``SQLITE_DBNAME``.
    """
    full_env: dict[str, Any] = {"PERSISTENCE_MODULE": f"eventsourcing.{persistence}"}
    full_env.update(env or {})
    cls = SnapshottingChannelApp if snapshots else ChannelApp
    return cls(env=full_env)


def new_channel(cid: str) -> Channel:
    """The same channel chanlog's ``channel_created`` describes."""
    return Channel(
        channel_id=cid,
        participants=[OUR_ADDRESS, PEER_ADDRESS],
        challenge_duration=CHALLENGE_DURATION_S,
    )


def sign(channel: Channel, turn: int) -> None:
    """Trigger the same ``state-signed`` fact as :func:`benchmarks.workload.signed_state`."""
    state_hash, signature = state_fields(turn)
    channel.sign_state(turn, state_hash, OUR_ADDRESS, signature, 1_700_000_000_000 + turn)
