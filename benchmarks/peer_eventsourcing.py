"""The peer: the same channel traffic through the ``eventsourcing`` library (9.5.6).

A ``Channel`` aggregate takes ``channel-created``, ``state-signed``, ``state-received`` and
``state-supported-updated`` with the same fields as chanlog's events, and checks the rules
chanlog's channel projection checks for them (the signer is a participant; a turn below the
supported one is stale; one state hash per turn and one signature per signer; a supported
turn increases and names the previous one) before it triggers the event, the way an
eventsourcing command method validates. Like chanlog's fold, a supported turn prunes the
signatures of older turns.
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
    timestamp,
    turn_of,
)

__all__ = ["Channel", "ChannelApp", "advance", "make_app", "new_channel", "sign"]


class Channel(Aggregate):
    """A two-party channel as an eventsourcing aggregate."""

    @event("Created")
    def __init__(self, channel_id: str, participants: list[str], challenge_duration: int) -> None:
        self.channel_id = channel_id
        self.participants = list(participants)
        self.challenge_duration = challenge_duration
        self.latest_turn: int | None = None
        self.supported_turn: int | None = None
        self.supported_hash: str | None = None
        # Turn (as a string) → [state hash, signers]: JSON-ready, so it can be snapshotted.
        self.signers: dict[str, list[Any]] = {}

    def add_signature(
        self,
        turn_num: int,
        state_hash: str,
        signer: str,
        signature: str,
        timestamp_ms: int,
        *,
        ours: bool,
    ) -> None:
        """Validate, then record a signature on a state (``StateSigned`` when ``ours``, else
        ``StateReceived``)."""
        key = signer.lower()
        if key not in {p.lower() for p in self.participants}:
            raise ValueError(f"signer {signer} is not a participant")
        if self.supported_turn is not None and turn_num < self.supported_turn:
            raise ValueError(f"turn {turn_num} is stale")
        known = self.signers.get(str(turn_num))
        if known is not None and (known[0] != state_hash or key in known[1]):
            raise ValueError(f"turn {turn_num}: conflicting state or duplicate signer")
        trigger = self._state_signed if ours else self._state_received
        trigger(
            turn_num=turn_num,
            state_hash=state_hash,
            signer=signer,
            signature=signature,
            timestamp_ms=timestamp_ms,
        )

    def _add(self, turn_num: int, state_hash: str, signer: str) -> None:
        if self.latest_turn is None or turn_num > self.latest_turn:
            self.latest_turn = turn_num
        self.signers.setdefault(str(turn_num), [state_hash, []])[1].append(signer.lower())

    @event("StateSigned")
    def _state_signed(
        self, turn_num: int, state_hash: str, signer: str, signature: str, timestamp_ms: int
    ) -> None:
        self._add(turn_num, state_hash, signer)

    @event("StateReceived")
    def _state_received(
        self, turn_num: int, state_hash: str, signer: str, signature: str, timestamp_ms: int
    ) -> None:
        self._add(turn_num, state_hash, signer)

    def support(
        self,
        supported_turn: int,
        state_hash: str,
        num_signatures: int,
        prev_supported_turn: int | None,
        timestamp_ms: int,
    ) -> None:
        """Validate, then record that a turn is supported (``StateSupportedUpdated``)."""
        if self.supported_turn is not None and supported_turn <= self.supported_turn:
            raise ValueError(f"supported turn {supported_turn} does not increase")
        if prev_supported_turn != self.supported_turn:
            raise ValueError(f"prev_supported_turn {prev_supported_turn} does not match")
        known = self.signers.get(str(supported_turn))
        if known is not None and known[0] != state_hash:
            raise ValueError(f"turn {supported_turn} has another state")
        self._supported(
            supported_turn=supported_turn,
            state_hash=state_hash,
            num_signatures=num_signatures,
            prev_supported_turn=prev_supported_turn,
            timestamp_ms=timestamp_ms,
        )

    @event("StateSupportedUpdated")
    def _supported(
        self,
        supported_turn: int,
        state_hash: str,
        num_signatures: int,
        prev_supported_turn: int | None,
        timestamp_ms: int,
    ) -> None:
        self.supported_turn = supported_turn
        self.supported_hash = state_hash
        self.signers = {
            turn: entry for turn, entry in self.signers.items() if int(turn) >= supported_turn
        }


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
    channel.add_signature(turn, state_hash, OUR_ADDRESS, signature, timestamp(turn), ours=True)


def advance(channel: Channel, index: int) -> None:
    """Trigger the same fact as :func:`benchmarks.workload.channel_event` ``index >= 1``."""
    turn, step = turn_of(index)
    if step == 0:
        sign(channel, turn)
    elif step == 1:
        state_hash, signature = state_fields(turn, PEER_ADDRESS)
        channel.add_signature(
            turn, state_hash, PEER_ADDRESS, signature, timestamp(turn), ours=False
        )
    else:
        channel.support(
            turn, state_fields(turn)[0], 2, turn - 1 if turn > 1 else None, timestamp(turn)
        )
