"""The states the ``channel`` projection folds into: immutable records of one channel's
off-chain turns and on-chain facts (their fold rules are in :mod:`chanlog.projections.channel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from chanlog.projections._record import record
from chanlog.projections._turns import TurnMap

__all__ = [
    "CHALLENGED",
    "CONCLUDED",
    "CREATED",
    "FINALIZED",
    "OPEN",
    "POSTFUND_TURN",
    "Challenge",
    "ChannelState",
    "ChannelTerms",
    "OnChainFacts",
    "TurnSignatures",
]

CREATED = "created"
OPEN = "open"
FINALIZED = "finalized"
CHALLENGED = "challenged"
CONCLUDED = "concluded"
POSTFUND_TURN = 1
"""go-nitro's post-fund turn: once it is supported the channel is open."""


@record(kw_only=False)
class TurnSignatures:
    """The state hash of one turn and who signed it (lower-cased addresses)."""

    state_hash: str
    signers: frozenset[str]


@record
class Challenge:
    """The active on-chain challenge. ``stale`` marks a challenge on a turn older than our
    supported state: the case a node must answer."""

    turn_num_record: int
    finalization_time: int
    challenger: str
    stale: bool
    is_final: bool | None = None
    candidate_state_hash: str | None = None


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@record
class ChannelTerms:
    """The fixed part of a channel, as ``channel-created`` set it."""

    channel_id: str
    participants: tuple[str, ...]
    participant_keys: frozenset[str]
    """The participants lower-cased: who may sign."""
    channel_nonce: int | None
    app_definition: str | None
    challenge_duration: int
    created_ms: int


@record
class OnChainFacts:
    """What the chain said about a channel. Amount maps are keyed by lower-cased asset
    address; ``withdrawn`` by ``(recipient, asset)``, both lower-cased."""

    holdings: Mapping[str, int] = _EMPTY
    deposited: Mapping[str, int] = _EMPTY
    withdrawn: Mapping[tuple[str, str], int] = _EMPTY
    chain_position: tuple[int, int] | None = None
    challenge: Challenge | None = None
    turn_num_record: int | None = None
    concluded: bool = False
    concluded_at_turn: int | None = None


_NO_CHAIN_FACTS = OnChainFacts()
_EMPTY_TURNS: TurnMap[TurnSignatures] = TurnMap()


@record
class ChannelState:
    """One channel as of some offset.

    The fixed part (:class:`ChannelTerms`) and the on-chain part (:class:`OnChainFacts`) are
    shared between the states of a channel until an event changes them, so folding an
    off-chain event copies only the off-chain fields; their fields read through flat
    properties (``state.participants``, ``state.holdings``...). ``signatures`` maps a turn
    to its :class:`TurnSignatures` (pruned below the supported turn).
    """

    terms: ChannelTerms
    onchain: OnChainFacts = _NO_CHAIN_FACTS
    latest_turn: int | None = None
    latest_signed_turn: int | None = None
    supported_turn: int | None = None
    supported_hash: str | None = None
    signatures: Mapping[int, TurnSignatures] = _EMPTY_TURNS
    final_turn: int | None = None
    final_state_hash: str | None = None
    event_count: int = 1
    updated_ms: int

    @property
    def channel_id(self) -> str:
        """The channel id as the creating event spelled it."""
        return self.terms.channel_id

    @property
    def participants(self) -> tuple[str, ...]:
        """The participants' addresses, in channel order."""
        return self.terms.participants

    @property
    def channel_nonce(self) -> int | None:
        """The channel nonce, when known."""
        return self.terms.channel_nonce

    @property
    def app_definition(self) -> str | None:
        """The app definition address, when known."""
        return self.terms.app_definition

    @property
    def challenge_duration(self) -> int:
        """The challenge duration (s)."""
        return self.terms.challenge_duration

    @property
    def created_ms(self) -> int:
        """When the channel was created (ms)."""
        return self.terms.created_ms

    @property
    def holdings(self) -> Mapping[str, int]:
        """Held on chain, per asset."""
        return self.onchain.holdings

    @property
    def deposited(self) -> Mapping[str, int]:
        """Deposited in total, per asset."""
        return self.onchain.deposited

    @property
    def withdrawn(self) -> Mapping[tuple[str, str], int]:
        """Withdrawn, per ``(recipient, asset)``."""
        return self.onchain.withdrawn

    @property
    def chain_position(self) -> tuple[int, int] | None:
        """``(block_num, tx_index)`` of the last chain event."""
        return self.onchain.chain_position

    @property
    def challenge(self) -> Challenge | None:
        """The active challenge, if any."""
        return self.onchain.challenge

    @property
    def turn_num_record(self) -> int | None:
        """The on-chain turn record (set by challenges and clears)."""
        return self.onchain.turn_num_record

    @property
    def concluded(self) -> bool:
        """Whether the channel was concluded on chain."""
        return self.onchain.concluded

    @property
    def concluded_at_turn(self) -> int | None:
        """The turn the conclusion finalized."""
        return self.onchain.concluded_at_turn

    @property
    def status(self) -> str:
        """``concluded``, ``challenged``, ``finalized``, ``open`` (post-fund state
        supported) or ``created``, in that order of precedence."""
        onchain = self.onchain
        if onchain.concluded:
            return CONCLUDED
        if onchain.challenge is not None:
            return CHALLENGED
        if self.final_turn is not None:
            return FINALIZED
        if self.supported_turn is not None and self.supported_turn >= POSTFUND_TURN:
            return OPEN
        return CREATED

    def is_finalized_at(self, now: int) -> bool:
        """Whether the channel is finalized on chain at unix time ``now`` (s): concluded, or
        an active challenge whose timeout has passed (a timeout emits no chain event)."""
        onchain = self.onchain
        if onchain.concluded:
            return True
        challenge = onchain.challenge
        return challenge is not None and now >= challenge.finalization_time

    def withdrawn_of(self, asset: str) -> int:
        """Everything withdrawn of ``asset`` so far, by all recipients."""
        key = asset.lower()
        return sum(amount for (_, each), amount in self.withdrawn.items() if each == key)
