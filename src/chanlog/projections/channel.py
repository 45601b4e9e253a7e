"""The ``channel`` projection: off-chain states and on-chain facts of every channel
(DESIGN section 4), folded go-nitro style.

Off-chain: states are signed (by us) and received (from peers) per turn; a turn has one state
hash and each participant signs it once; a supported state only moves forward and names the
one it replaces; signatures below the supported turn are pruned. On chain: events carry a
chain position that strictly increases; deposits must add up (``now_held``); a challenge must
raise the turn record and is answered by a clear with a higher one; withdrawals follow the
conclusion and never exceed what was deposited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from chanlog import fields
from chanlog.errors import DecodeError
from chanlog.events.base import Event
from chanlog.events.chain import (
    AllocationUpdated,
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    DepositDetected,
    WithdrawCompleted,
)
from chanlog.events.channel import (
    ChannelCreated,
    ChannelFinalized,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
)
from chanlog.fields import InlineCheck
from chanlog.projections._data import Reader, amount_map
from chanlog.projections._record import as_dict, maker, replacer, updater
from chanlog.projections._turns import TurnMap
from chanlog.projections.channel_state import (
    CHALLENGED,
    CONCLUDED,
    CREATED,
    FINALIZED,
    OPEN,
    Challenge,
    ChannelState,
    ChannelTerms,
    OnChainFacts,
    TurnSignatures,
)
from chanlog.projections.entity import EntityProjection

__all__ = [
    "CHALLENGED",
    "CONCLUDED",
    "CREATED",
    "FINALIZED",
    "OPEN",
    "Challenge",
    "ChannelProjection",
    "ChannelState",
    "ChannelTerms",
    "OnChainFacts",
    "TurnSignatures",
]

_evolve = replacer(ChannelState)
_evolve_chain = replacer(OnChainFacts)
_turn_signatures = maker(TurnSignatures)
# The two events of every turn get copies that write only the fields they change.
_after_signature = updater(
    ChannelState, "signatures", "latest_turn", "latest_signed_turn", "event_count", "updated_ms"
)
_after_support = updater(
    ChannelState,
    "supported_turn",
    "supported_hash",
    "signatures",
    "latest_turn",
    "event_count",
    "updated_ms",
)
_Folder = Callable[["ChannelProjection", "ChannelState | None", Any, str], "ChannelState"]


class ChannelProjection(EntityProjection[ChannelState]):
    """Folds channel and chain events into :class:`ChannelState`, refusing the illegal
    transitions of DESIGN section 4."""

    name: ClassVar[str] = "channel"
    schema_version: ClassVar[int] = 1
    entity_id_check: ClassVar[InlineCheck | None] = fields.bytes32
    cross_entity_event_types: ClassVar[frozenset[type[Event]] | None] = frozenset()

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """Channel and chain events name their channel."""
        if type(event) in _FOLDERS:
            return (event.channel_id.lower(),)  # type: ignore[attr-defined]
        return ()

    def fold(
        self, state: ChannelState | None, event: Event, entity_id: str, offset: int
    ) -> ChannelState | None:
        """The channel after ``event`` (pure)."""
        folder = _FOLDERS.get(type(event))
        if folder is None:
            return state
        return folder(self, state, event, entity_id)

    # -- lifecycle -----------------------------------------------------------------------

    def _created(
        self, state: ChannelState | None, event: ChannelCreated, entity_id: str
    ) -> ChannelState:
        if state is not None:
            raise self.refuse(
                "the channel already exists",
                entity_id=entity_id,
                event=event,
                rule="channel.created-once",
            )
        terms = ChannelTerms(
            channel_id=event.channel_id,
            participants=event.participants,
            participant_keys=frozenset(address.lower() for address in event.participants),
            channel_nonce=event.channel_nonce,
            app_definition=event.app_definition,
            challenge_duration=event.challenge_duration,
            created_ms=event.timestamp_ms,
        )
        return ChannelState(terms=terms, updated_ms=event.timestamp_ms)

    def _existing(self, state: ChannelState | None, event: Event, entity_id: str) -> ChannelState:
        if state is None:
            raise self.refuse(
                "the channel was never created",
                entity_id=entity_id,
                event=event,
                rule="channel.requires-created",
            )
        return state

    def _open_for_states(
        self, state: ChannelState | None, event: Event, entity_id: str
    ) -> ChannelState:
        state = self._existing(state, event, entity_id)
        if state.final_turn is not None or state.onchain.concluded:
            raise self.refuse(
                f"the channel is {state.status}; no further states",
                entity_id=entity_id,
                event=event,
                rule="channel.closed",
            )
        return state

    # -- off-chain states ----------------------------------------------------------------

    def _signature(
        self, state: ChannelState | None, event: StateSigned | StateReceived, entity_id: str
    ) -> ChannelState:
        if state is None or state.final_turn is not None or state.onchain.concluded:
            state = self._open_for_states(state, event, entity_id)  # raises
        signer = event.signer.lower()
        if signer not in state.terms.participant_keys:
            raise self.refuse(
                f"signer {event.signer} is not a participant",
                entity_id=entity_id,
                event=event,
                rule="channel.signer-not-participant",
            )
        turn = event.turn_num
        supported = state.supported_turn
        if supported is not None and turn < supported:
            raise self.refuse(
                f"turn {turn} is below the supported turn {supported}",
                entity_id=entity_id,
                event=event,
                rule="channel.stale-turn",
            )
        signatures = state.signatures
        if type(signatures) is not TurnMap:  # a state built by hand may hold a dict
            signatures = TurnMap(signatures)
        known = signatures.get(turn)
        if known is None:
            entry = _turn_signatures(event.state_hash, frozenset((signer,)))
        else:
            if known.state_hash != event.state_hash:
                raise self.refuse(
                    f"turn {turn} already has state {known.state_hash}",
                    entity_id=entity_id,
                    event=event,
                    rule="channel.conflicting-state-hash",
                )
            if signer in known.signers:
                raise self.refuse(
                    f"{event.signer} already signed turn {turn}",
                    entity_id=entity_id,
                    event=event,
                    rule="channel.duplicate-signer",
                )
            entry = _turn_signatures(known.state_hash, known.signers | {signer})
        latest = state.latest_turn
        signed = state.latest_signed_turn
        if type(event) is StateSigned and (signed is None or turn > signed):
            signed = turn
        return _after_signature(
            state,
            signatures.set(turn, entry),
            turn if latest is None or turn > latest else latest,
            signed,
            state.event_count + 1,
            event.timestamp_ms,
        )

    def _supported(
        self, state: ChannelState | None, event: StateSupportedUpdated, entity_id: str
    ) -> ChannelState:
        if state is None or state.final_turn is not None or state.onchain.concluded:
            state = self._open_for_states(state, event, entity_id)  # raises
        turn = event.supported_turn
        supported = state.supported_turn
        if supported is not None and turn <= supported:
            raise self.refuse(
                f"supported turn {turn} does not increase on {supported}",
                entity_id=entity_id,
                event=event,
                rule="channel.supported-turn-must-increase",
            )
        if event.prev_supported_turn != supported:
            raise self.refuse(
                f"prev_supported_turn is {event.prev_supported_turn}, "
                f"but the supported turn is {supported}",
                entity_id=entity_id,
                event=event,
                rule="channel.prev-supported-mismatch",
            )
        signatures = state.signatures
        if type(signatures) is not TurnMap:  # a state built by hand may hold a dict
            signatures = TurnMap(signatures)
        known = signatures.get(turn)
        if known is not None and known.state_hash != event.state_hash:
            raise self.refuse(
                f"turn {turn} has state {known.state_hash}, not {event.state_hash}",
                entity_id=entity_id,
                event=event,
                rule="channel.conflicting-state-hash",
            )
        latest = state.latest_turn
        return _after_support(
            state,
            turn,
            event.state_hash,
            signatures.from_turn(turn),
            turn if latest is None or turn > latest else latest,
            state.event_count + 1,
            event.timestamp_ms,
        )

    def _finalized(
        self, state: ChannelState | None, event: ChannelFinalized, entity_id: str
    ) -> ChannelState:
        state = self._open_for_states(state, event, entity_id)
        return _evolve(
            state,
            final_turn=event.final_turn,
            final_state_hash=event.final_state_hash,
            event_count=state.event_count + 1,
            updated_ms=event.timestamp_ms,
        )

    # -- on-chain facts ------------------------------------------------------------------

    def _on_chain(
        self, state: ChannelState | None, event: ChainEvent, entity_id: str
    ) -> ChannelState:
        state = self._existing(state, event, entity_id)
        position = (event.block_num, event.tx_index)
        last = state.onchain.chain_position
        if last is not None and position <= last:
            raise self.refuse(
                f"chain position {position} is not after {last}",
                entity_id=entity_id,
                event=event,
                rule="channel.chain-order",
            )
        return state

    def _deposit(
        self, state: ChannelState | None, event: DepositDetected, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        asset = event.asset.lower()
        held = facts.holdings.get(asset, 0) + event.amount_deposited
        if event.now_held is not None and event.now_held != held:
            raise self.refuse(
                f"now_held {event.now_held} != holdings {held - event.amount_deposited} "
                f"+ deposit {event.amount_deposited}",
                entity_id=entity_id,
                event=event,
                rule="channel.now-held-mismatch",
            )
        holdings = dict(facts.holdings)
        holdings[asset] = held
        deposited = dict(facts.deposited)
        deposited[asset] = deposited.get(asset, 0) + event.amount_deposited
        return _after_chain(state, event, holdings=holdings, deposited=deposited)

    def _allocation(
        self, state: ChannelState | None, event: AllocationUpdated, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        holdings = dict(facts.holdings)
        holdings[event.asset.lower()] = event.new_amount
        return _after_chain(state, event, holdings=holdings)

    def _challenge(
        self, state: ChannelState | None, event: ChallengeRegistered, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        record = facts.turn_num_record
        if record is not None and event.turn_num_record <= record:
            raise self.refuse(
                f"turn record {event.turn_num_record} does not raise the record {record}",
                entity_id=entity_id,
                event=event,
                rule="channel.challenge-must-raise-record",
            )
        supported = state.supported_turn
        challenge = Challenge(
            turn_num_record=event.turn_num_record,
            finalization_time=event.finalization_time,
            challenger=event.challenger,
            stale=supported is not None and event.turn_num_record < supported,
            is_final=event.is_final,
            candidate_state_hash=event.candidate_state_hash,
        )
        return _after_chain(
            state, event, challenge=challenge, turn_num_record=event.turn_num_record
        )

    def _cleared(
        self, state: ChannelState | None, event: ChallengeCleared, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        challenge = facts.challenge
        if challenge is None:
            raise self.refuse(
                "no challenge is active",
                entity_id=entity_id,
                event=event,
                rule="channel.clear-requires-challenge",
            )
        if event.new_turn_num_record <= challenge.turn_num_record:
            raise self.refuse(
                f"new record {event.new_turn_num_record} is not above the challenged "
                f"{challenge.turn_num_record}",
                entity_id=entity_id,
                event=event,
                rule="channel.clear-must-raise-record",
            )
        return _after_chain(state, event, challenge=None, turn_num_record=event.new_turn_num_record)

    def _concluded(
        self, state: ChannelState | None, event: ChannelConcluded, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        if facts.concluded:
            raise self.refuse(
                "the channel is already concluded",
                entity_id=entity_id,
                event=event,
                rule="channel.concluded-once",
            )
        return _after_chain(state, event, concluded=True, concluded_at_turn=event.finalized_at_turn)

    def _withdraw(
        self, state: ChannelState | None, event: WithdrawCompleted, entity_id: str
    ) -> ChannelState:
        state = self._on_chain(state, event, entity_id)
        facts = state.onchain
        if not facts.concluded:
            raise self.refuse(
                "withdrawals follow the conclusion",
                entity_id=entity_id,
                event=event,
                rule="channel.withdraw-before-conclusion",
            )
        asset = event.asset.lower()
        deposited = facts.deposited.get(asset, 0)
        already = state.withdrawn_of(asset)
        if already + event.amount > deposited:
            raise self.refuse(
                f"withdrawing {event.amount} of {event.asset} after {already} exceeds "
                f"the {deposited} deposited",
                entity_id=entity_id,
                event=event,
                rule="channel.withdraw-exceeds-deposit",
            )
        key = (event.recipient.lower(), asset)
        withdrawn = dict(facts.withdrawn)
        withdrawn[key] = withdrawn.get(key, 0) + event.amount
        return _after_chain(state, event, withdrawn=withdrawn)

    # -- snapshot codec ------------------------------------------------------------------

    def dump_state(self, state: ChannelState) -> dict[str, Any]:
        """The state as a JSON object; amounts as decimal strings."""
        challenge = state.challenge
        return {
            "channel_id": state.channel_id,
            "participants": list(state.participants),
            "channel_nonce": state.channel_nonce,
            "app_definition": state.app_definition,
            "challenge_duration": state.challenge_duration,
            "latest_turn": state.latest_turn,
            "latest_signed_turn": state.latest_signed_turn,
            "supported_turn": state.supported_turn,
            "supported_hash": state.supported_hash,
            "signatures": [
                [turn, entry.state_hash, sorted(entry.signers)]
                for turn, entry in sorted(state.signatures.items())
            ],
            "final_turn": state.final_turn,
            "final_state_hash": state.final_state_hash,
            "holdings": amount_map(state.holdings),
            "deposited": amount_map(state.deposited),
            "withdrawn": [
                [recipient, asset, str(amount)]
                for (recipient, asset), amount in sorted(state.withdrawn.items())
            ],
            "chain_position": None if state.chain_position is None else list(state.chain_position),
            "challenge": None if challenge is None else as_dict(challenge),
            "turn_num_record": state.turn_num_record,
            "concluded": state.concluded,
            "concluded_at_turn": state.concluded_at_turn,
            "event_count": state.event_count,
            "created_ms": state.created_ms,
            "updated_ms": state.updated_ms,
        }

    def load_state(self, data: Any) -> ChannelState:
        """Read back :meth:`dump_state` output, strictly."""
        r = Reader(data, "channel")
        participants = r.texts("participants")
        terms = ChannelTerms(
            channel_id=r.text("channel_id"),
            participants=participants,
            participant_keys=frozenset(address.lower() for address in participants),
            channel_nonce=r.opt_uint("channel_nonce"),
            app_definition=r.opt_text("app_definition"),
            challenge_duration=r.uint("challenge_duration"),
            created_ms=r.uint("created_ms"),
        )
        onchain = OnChainFacts(
            holdings=r.amounts("holdings"),
            deposited=r.amounts("deposited"),
            withdrawn=_load_withdrawn(r.raw("withdrawn")),
            chain_position=_load_position(r.raw("chain_position")),
            challenge=_load_challenge(r.raw("challenge")),
            turn_num_record=r.opt_uint("turn_num_record"),
            concluded=r.flag("concluded"),
            concluded_at_turn=r.opt_uint("concluded_at_turn"),
        )
        return ChannelState(
            terms=terms,
            onchain=onchain,
            latest_turn=r.opt_uint("latest_turn"),
            latest_signed_turn=r.opt_uint("latest_signed_turn"),
            supported_turn=r.opt_uint("supported_turn"),
            supported_hash=r.opt_text("supported_hash"),
            signatures=_load_signatures(r.raw("signatures")),
            final_turn=r.opt_uint("final_turn"),
            final_state_hash=r.opt_text("final_state_hash"),
            event_count=r.uint("event_count"),
            updated_ms=r.uint("updated_ms"),
        )


def _after_chain(state: ChannelState, event: ChainEvent, **changes: Any) -> ChannelState:
    """``state`` after the chain event ``event`` changed its on-chain facts."""
    return _evolve(
        state,
        onchain=_evolve_chain(
            state.onchain, chain_position=(event.block_num, event.tx_index), **changes
        ),
        event_count=state.event_count + 1,
        updated_ms=event.timestamp_ms,
    )


def _is_uint(value: Any) -> bool:
    return type(value) is int and value >= 0


def _load_signatures(raw: Any) -> TurnMap[TurnSignatures]:
    if not isinstance(raw, list):
        raise DecodeError("channel.signatures: expected a list", path="channel.signatures")
    result: dict[int, TurnSignatures] = {}
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not _is_uint(item[0])
            or type(item[1]) is not str
            or not isinstance(item[2], list)
            or not all(type(signer) is str for signer in item[2])
        ):
            raise DecodeError(f"channel.signatures: bad entry {item!r}", path="channel.signatures")
        result[item[0]] = TurnSignatures(item[1], frozenset(item[2]))
    return TurnMap(result)


def _load_withdrawn(raw: Any) -> dict[tuple[str, str], int]:
    if not isinstance(raw, list):
        raise DecodeError("channel.withdrawn: expected a list", path="channel.withdrawn")
    result: dict[tuple[str, str], int] = {}
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(type(part) is str for part in item)
            or not item[2].isdigit()
        ):
            raise DecodeError(f"channel.withdrawn: bad entry {item!r}", path="channel.withdrawn")
        result[(item[0], item[1])] = int(item[2])
    return result


def _load_position(raw: Any) -> tuple[int, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2 or not all(_is_uint(part) for part in raw):
        raise DecodeError(
            f"channel.chain_position: bad value {raw!r}", path="channel.chain_position"
        )
    return (raw[0], raw[1])


def _load_challenge(raw: Any) -> Challenge | None:
    if raw is None:
        return None
    r = Reader(raw, "channel.challenge")
    return Challenge(
        turn_num_record=r.uint("turn_num_record"),
        finalization_time=r.uint("finalization_time"),
        challenger=r.text("challenger"),
        stale=r.flag("stale"),
        is_final=r.opt_flag("is_final"),
        candidate_state_hash=r.opt_text("candidate_state_hash"),
    )


_FOLDERS: dict[type[Event], _Folder] = {
    ChannelCreated: ChannelProjection._created,
    StateSigned: ChannelProjection._signature,
    StateReceived: ChannelProjection._signature,
    StateSupportedUpdated: ChannelProjection._supported,
    ChannelFinalized: ChannelProjection._finalized,
    DepositDetected: ChannelProjection._deposit,
    AllocationUpdated: ChannelProjection._allocation,
    ChallengeRegistered: ChannelProjection._challenge,
    ChallengeCleared: ChannelProjection._cleared,
    ChannelConcluded: ChannelProjection._concluded,
    WithdrawCompleted: ChannelProjection._withdraw,
}
ChannelProjection.event_types = frozenset(_FOLDERS)
