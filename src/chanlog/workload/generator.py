"""A deterministic generator of realistic state-channel logs.

Every channel lives through a go-nitro style life: a ``DirectFund`` objective is created and
approved (sometimes rejected, and then nothing else happens on the channel), the channel is
created, the pre-fund state (turn 0) is signed by all and supported, every participant
deposits in outcome order (``now_held`` cumulative), the post-fund state (turn 1) is
supported and the objective completes. Then ``turns`` running turns, each signed by all and
supported, sometimes interrupted by an on-chain challenge (some of them stale) that a clear
answers. Finally a ``DirectDefund``: the final turn, the channel finalized and concluded,
the allocation updated, every participant's withdrawal, the objective completed. Messages
flow for each objective (sent, received, acked, sometimes dropped).

Channels are interleaved (``interleave`` of them in flight at once), timestamps and chain
positions are assigned in emission order, and everything is derived from the seed: the same
configuration gives byte-identical events.

Usage::

    workload = Workload(WorkloadConfig(seed=7, channels=100, turns=100))
    for event in workload:                 # an iterator of events...
        ...
    for batch in workload.batches(500):    # ...or lists of at most 500
        store.append_batch(batch)
    expected = workload.expectation()      # what the log must fold to
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import attrs

from chanlog.errors import InvalidArgument
from chanlog.events import (
    AllocationUpdated,
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    ChannelCreated,
    ChannelFinalized,
    DepositDetected,
    Event,
    MessageAcked,
    MessageDropped,
    MessageReceived,
    MessageSent,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    ObjectiveRejected,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
    WithdrawCompleted,
)
from chanlog.hashing import keccak256
from chanlog.workload.expectation import Expectation, ExpectedChannel, ExpectedObjective

__all__ = ["ChannelPlan", "Workload", "WorkloadConfig", "generate"]

FIRST_BLOCK = 1_000_000
CHALLENGE_DURATION_S = 86_400
_Step = tuple[type[Event], dict[str, Any]]
"""An event before the interleaver stamps its timestamp (and, on chain, its position)."""


def _probability(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise InvalidArgument(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _count(minimum: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not int or value < minimum:
            raise InvalidArgument(f"{attribute.name} must be an int >= {minimum}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class WorkloadConfig:
    """What to generate. Invalid values raise :class:`~chanlog.errors.InvalidArgument`
    naming the field.

    Attributes:
        seed: everything random derives from it.
        channels: how many channels (each with a fund and, unless rejected, a defund).
        turns: running turns per channel between post-fund and the final turn.
        participants: participants per channel (2..255); participant 0 is us.
        assets: assets each channel is funded with.
        reject_probability: chance that a channel's DirectFund is rejected.
        challenge_probability: chance that a channel sees an on-chain challenge (needs
            ``turns >= 2``).
        stale_probability: share of challenges on a turn older than our supported one.
        clear_probability: share of challenges answered by a clear (the others stay active
            until the channel concludes).
        messages: message exchanges (sent + received + ack) per objective.
        drop_probability: chance per exchange of an extra dropped inbound message.
        interleave: channels in flight at once (1: one channel after another).
        start_ms: timestamp of the first event; ``step_ms`` between consecutive events.
    """

    seed: int = attrs.field(default=0, validator=_count(0))
    channels: int = attrs.field(default=10, validator=_count(0))
    turns: int = attrs.field(default=10, validator=_count(0))
    participants: int = attrs.field(default=2, validator=_count(2))
    assets: int = attrs.field(default=1, validator=_count(1))
    reject_probability: float = attrs.field(default=0.05, validator=_probability)
    challenge_probability: float = attrs.field(default=0.2, validator=_probability)
    stale_probability: float = attrs.field(default=0.5, validator=_probability)
    clear_probability: float = attrs.field(default=0.9, validator=_probability)
    messages: int = attrs.field(default=1, validator=_count(0))
    drop_probability: float = attrs.field(default=0.05, validator=_probability)
    interleave: int = attrs.field(default=8, validator=_count(1))
    start_ms: int = attrs.field(default=1_700_000_000_000, validator=_count(0))
    step_ms: int = attrs.field(default=10, validator=_count(0))

    def __attrs_post_init__(self) -> None:
        if self.participants > 255:
            raise InvalidArgument(f"participants must be <= 255, got {self.participants}")


def _hex(label: str, size: int = 32) -> str:
    digest = keccak256(label.encode())
    while len(digest) < size:
        digest += keccak256(digest)
    return "0x" + digest[:size].hex()


OUR_ADDRESS = "0x" + keccak256(b"chanlog-workload|us")[-20:].hex()
"""Participant 0 of every generated channel: the node whose log this is."""


@attrs.frozen(kw_only=True)
class ChannelPlan:
    """Every decision about one channel, drawn up front from the seed."""

    index: int
    channel_id: str
    fund_objective_id: str
    defund_objective_id: str
    participants: tuple[str, ...]
    assets: tuple[str, ...]
    outcome: tuple[tuple[int, ...], ...]
    """``outcome[asset][participant]``: each participant's deposit (and final payout)."""
    rejected: bool
    challenge_after: int | None
    """Running-turn index after which a challenge is registered (None: no challenge)."""
    stale: bool
    cleared: bool
    drops: tuple[bool, ...]
    """Per message exchange of the fund then the defund objective: one extra drop."""

    @property
    def final_turn(self) -> int:
        """The turn of the final state: after pre-fund (0), post-fund (1) and the running
        turns."""
        return 2 + self._turns

    _turns: int = 0


class Workload:
    """A generated log: iterate it, take it in batches, or ask what it folds to.

    Args:
        config: the configuration; keyword arguments override its fields (or build one).
    """

    def __init__(self, config: WorkloadConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = WorkloadConfig(**overrides)
        elif overrides:
            config = attrs.evolve(config, **overrides)
        self.config = config
        self.plans: list[ChannelPlan] = [self._plan(index) for index in range(config.channels)]

    # -- plans ---------------------------------------------------------------------------

    def _plan(self, index: int) -> ChannelPlan:
        config = self.config
        rng = random.Random(f"chanlog-workload|{config.seed}|{index}")
        base = f"{config.seed}|{index}"
        peers = tuple(
            "0x" + keccak256(f"peer|{base}|{p}".encode())[-20:].hex()
            for p in range(1, config.participants)
        )
        assets = tuple(
            "0x" + "00" * 20 if a == 0 else "0x" + keccak256(f"asset|{a}".encode())[-20:].hex()
            for a in range(config.assets)
        )
        outcome = tuple(
            tuple(rng.randrange(1, 10**18) for _ in range(config.participants))
            for _ in range(config.assets)
        )
        rejected = rng.random() < config.reject_probability
        challenge_after = None
        stale = cleared = False
        if config.turns >= 2 and rng.random() < config.challenge_probability:
            challenge_after = rng.randrange(0, config.turns - 1)
            stale = rng.random() < config.stale_probability
            cleared = rng.random() < config.clear_probability
        drops = tuple(rng.random() < config.drop_probability for _ in range(2 * config.messages))
        return ChannelPlan(
            index=index,
            channel_id=_hex(f"channel|{base}"),
            fund_objective_id=_hex(f"fund|{base}"),
            defund_objective_id=_hex(f"defund|{base}"),
            participants=(OUR_ADDRESS, *peers),
            assets=assets,
            outcome=outcome,
            rejected=rejected,
            challenge_after=challenge_after,
            stale=stale,
            cleared=cleared,
            drops=drops,
            turns=config.turns,
        )

    # -- one channel's script ------------------------------------------------------------

    def script(self, plan: ChannelPlan) -> Iterator[_Step]:
        """The events of one channel, in order, before timestamps and chain positions."""
        channel = plan.channel_id
        participants = plan.participants
        fund = plan.fund_objective_id
        n = len(participants)
        yield (
            ObjectiveCreated,
            {
                "objective_id": fund,
                "objective_type": "DirectFund",
                "channel_id": channel,
                "participants": participants,
            },
        )
        yield from self._messages(plan, fund, 0)
        if plan.rejected:
            yield (
                ObjectiveRejected,
                {
                    "objective_id": fund,
                    "reason": "counterparty unreachable",
                    "error_code": "rejected",
                },
            )
            yield ChannelCreated, self._channel_created(plan)
            return
        yield ObjectiveApproved, {"objective_id": fund, "approver": OUR_ADDRESS}
        yield ChannelCreated, self._channel_created(plan)
        yield from self._turn(plan, 0, None)
        yield (
            ObjectiveCranked,
            {"objective_id": fund, "side_effects_count": n, "waiting": "deposits"},
        )
        for asset, amounts in zip(plan.assets, plan.outcome, strict=True):
            held = 0
            for amount in amounts:
                held += amount
                yield (
                    DepositDetected,
                    {
                        "channel_id": channel,
                        "asset": asset,
                        "amount_deposited": amount,
                        "now_held": held,
                    },
                )
        yield from self._turn(plan, 1, 0)
        yield (
            ObjectiveCompleted,
            {
                "objective_id": fund,
                "success": True,
                "final_channel_state": _state_hash(channel, 1),
            },
        )
        challenged_at: int | None = None
        for k in range(self.config.turns):
            turn = 2 + k
            yield from self._turn(plan, turn, turn - 1)
            if challenged_at is not None and plan.cleared:
                yield ChallengeCleared, {"channel_id": channel, "new_turn_num_record": turn}
                challenged_at = None
            if k == plan.challenge_after:
                record = turn - 1 if plan.stale else turn
                challenged_at = record
                yield (
                    ChallengeRegistered,
                    {
                        "channel_id": channel,
                        "turn_num_record": record,
                        "finalization_time": CHALLENGE_DURATION_S,  # made absolute when stamped
                        "challenger": participants[1],
                        "candidate_state_hash": _state_hash(channel, record),
                    },
                )
        yield from self._defund(plan)

    def _channel_created(self, plan: ChannelPlan) -> dict[str, Any]:
        return {
            "channel_id": plan.channel_id,
            "participants": plan.participants,
            "channel_nonce": plan.index,
            "challenge_duration": CHALLENGE_DURATION_S,
        }

    def _turn(self, plan: ChannelPlan, turn: int, previous: int | None) -> Iterator[_Step]:
        channel = plan.channel_id
        state_hash = _state_hash(channel, turn)
        final = True if turn == plan.final_turn else None
        yield (
            StateSigned,
            {
                "channel_id": channel,
                "turn_num": turn,
                "state_hash": state_hash,
                "signer": plan.participants[0],
                "signature": _signature(channel, turn, 0),
                "is_final": final,
            },
        )
        for position, peer in enumerate(plan.participants[1:], start=1):
            yield (
                StateReceived,
                {
                    "channel_id": channel,
                    "turn_num": turn,
                    "state_hash": state_hash,
                    "signer": peer,
                    "signature": _signature(channel, turn, position),
                    "is_final": final,
                    "peer_id": f"peer-{position}",
                },
            )
        yield (
            StateSupportedUpdated,
            {
                "channel_id": channel,
                "supported_turn": turn,
                "state_hash": state_hash,
                "num_signatures": len(plan.participants),
                "prev_supported_turn": previous,
            },
        )

    def _defund(self, plan: ChannelPlan) -> Iterator[_Step]:
        channel = plan.channel_id
        defund = plan.defund_objective_id
        final = plan.final_turn
        yield (
            ObjectiveCreated,
            {
                "objective_id": defund,
                "objective_type": "DirectDefund",
                "channel_id": channel,
                "participants": plan.participants,
            },
        )
        yield ObjectiveApproved, {"objective_id": defund, "approver": OUR_ADDRESS}
        yield from self._messages(plan, defund, self.config.messages)
        yield from self._turn(plan, final, final - 1)
        yield (
            ChannelFinalized,
            {
                "channel_id": channel,
                "final_turn": final,
                "final_state_hash": _state_hash(channel, final),
            },
        )
        yield (
            ObjectiveCranked,
            {
                "objective_id": defund,
                "side_effects_count": 1,
                "waiting": "conclusion",
            },
        )
        yield ChannelConcluded, {"channel_id": channel, "finalized_at_turn": final}
        for asset in plan.assets:
            yield AllocationUpdated, {"channel_id": channel, "asset": asset, "new_amount": 0}
        for asset, amounts in zip(plan.assets, plan.outcome, strict=True):
            for recipient, amount in zip(plan.participants, amounts, strict=True):
                yield (
                    WithdrawCompleted,
                    {
                        "channel_id": channel,
                        "recipient": recipient,
                        "asset": asset,
                        "amount": amount,
                    },
                )
        yield (
            ObjectiveCompleted,
            {
                "objective_id": defund,
                "success": True,
                "final_channel_state": _state_hash(channel, final),
            },
        )

    def _messages(self, plan: ChannelPlan, objective: str, first: int) -> Iterator[_Step]:
        for exchange in range(first, first + self.config.messages):
            peer = f"peer-{1 + exchange % (len(plan.participants) - 1)}"
            sent = _hex(f"message|{objective}|{exchange}|out")
            yield (
                MessageSent,
                {
                    "message_id": sent,
                    "peer_id": peer,
                    "objective_id": objective,
                    "payload_type": "objective-payload",
                    "payload_size_bytes": 512 + exchange,
                },
            )
            yield (
                MessageReceived,
                {
                    "message_id": _hex(f"message|{objective}|{exchange}|in"),
                    "peer_id": peer,
                    "objective_id": objective,
                    "payload_type": "objective-payload",
                    "payload_size_bytes": 480 + exchange,
                },
            )
            yield MessageAcked, {"message_id": sent, "peer_id": peer, "roundtrip_ms": 20 + exchange}
            if plan.drops[exchange]:
                yield (
                    MessageDropped,
                    {
                        "message_id": _hex(f"message|{objective}|{exchange}|bad"),
                        "peer_id": peer,
                        "reason": "signature does not recover to a participant",
                        "error_code": "signature_invalid",
                        "payload_size_bytes": 300,
                    },
                )

    # -- the interleaved log -------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        """Every event of the log, in log order (generated lazily: only the channels in
        flight are held)."""
        config = self.config
        rng = random.Random(f"chanlog-workload|{config.seed}|interleave")
        pending = iter(self.plans)
        active: list[Iterator[_Step]] = []
        timestamp = config.start_ms
        block = FIRST_BLOCK
        while True:
            while len(active) < config.interleave:
                plan = next(pending, None)
                if plan is None:
                    break
                active.append(self.script(plan))
            if not active:
                return
            slot = rng.randrange(len(active))
            step = next(active[slot], None)
            if step is None:
                active.pop(slot)
                continue
            cls, fields = step
            if issubclass(cls, ChainEvent):
                fields = dict(fields, block_num=block, tx_index=0)
                block += 1
                if cls is ChallengeRegistered:
                    fields["finalization_time"] += timestamp // 1000
            yield cls(timestamp_ms=timestamp, **fields)
            timestamp += config.step_ms

    def events(self) -> list[Event]:
        """The whole log as a list."""
        return list(self)

    def batches(self, size: int = 1000) -> Iterator[list[Event]]:
        """The log in consecutive lists of at most ``size`` events."""
        if type(size) is not int or size < 1:
            raise InvalidArgument(f"batch size must be an int >= 1, got {size!r}")
        batch: list[Event] = []
        for event in self:
            batch.append(event)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __len__(self) -> int:
        """How many events the log holds (computed from the scripts, no events built)."""
        return sum(sum(1 for _ in self.script(plan)) for plan in self.plans)

    # -- what the log must fold to -------------------------------------------------------

    def expectation(self) -> Expectation:
        """The final state of every objective and channel, from the plans alone (not from
        a fold), so a projection can be checked against it."""
        objectives: dict[str, ExpectedObjective] = {}
        channels: dict[str, ExpectedChannel] = {}
        total = 0
        for plan in self.plans:
            counts: dict[str, int] = {}
            sent: dict[str, int] = {}
            received: dict[str, int] = {}
            channel_events = 0
            for cls, fields in self.script(plan):
                total += 1
                if cls in (MessageSent, MessageReceived):
                    tally = sent if cls is MessageSent else received
                    tally[fields["objective_id"]] = tally.get(fields["objective_id"], 0) + 1
                elif "objective_id" in fields and not cls.__name__.startswith("Message"):
                    counts[fields["objective_id"]] = counts.get(fields["objective_id"], 0) + 1
                elif "channel_id" in fields:
                    channel_events += 1
            fund, defund = plan.fund_objective_id, plan.defund_objective_id
            objectives[fund.lower()] = ExpectedObjective(
                objective_id=fund,
                objective_type="DirectFund",
                channel_id=plan.channel_id,
                status="rejected" if plan.rejected else "completed",
                event_count=counts[fund],
                messages_sent=sent.get(fund, 0),
                messages_received=received.get(fund, 0),
            )
            if not plan.rejected:
                objectives[defund.lower()] = ExpectedObjective(
                    objective_id=defund,
                    objective_type="DirectDefund",
                    channel_id=plan.channel_id,
                    status="completed",
                    event_count=counts[defund],
                    messages_sent=sent.get(defund, 0),
                    messages_received=received.get(defund, 0),
                )
            channels[plan.channel_id.lower()] = self._expected_channel(plan, channel_events)
        return Expectation(objectives=objectives, channels=channels, event_count=total)

    def _expected_channel(self, plan: ChannelPlan, event_count: int) -> ExpectedChannel:
        assets = [asset.lower() for asset in plan.assets]
        if plan.rejected:
            return ExpectedChannel(
                channel_id=plan.channel_id,
                status="created",
                supported_turn=None,
                final_turn=None,
                holdings={},
                deposited={},
                withdrawn={},
                challenge_active=False,
                challenge_stale=None,
                turn_num_record=None,
                event_count=event_count,
            )
        final = plan.final_turn
        record: int | None = None
        if plan.challenge_after is not None:
            turn = 2 + plan.challenge_after
            record = turn + 1 if plan.cleared else (turn - 1 if plan.stale else turn)
        return ExpectedChannel(
            channel_id=plan.channel_id,
            status="concluded",
            supported_turn=final,
            final_turn=final,
            holdings=dict.fromkeys(assets, 0),
            deposited={a: sum(amounts) for a, amounts in zip(assets, plan.outcome, strict=True)},
            withdrawn={
                (recipient.lower(), asset): amount
                for asset, amounts in zip(assets, plan.outcome, strict=True)
                for recipient, amount in zip(plan.participants, amounts, strict=True)
            },
            challenge_active=plan.challenge_after is not None and not plan.cleared,
            challenge_stale=(
                plan.stale if plan.challenge_after is not None and not plan.cleared else None
            ),
            turn_num_record=record,
            event_count=event_count,
        )


def _state_hash(channel: str, turn: int) -> str:
    return _hex(f"state|{channel}|{turn}")


def _signature(channel: str, turn: int, signer: int) -> str:
    return _hex(f"signature|{channel}|{turn}|{signer}", 64) + "1b"


def generate(**options: Any) -> Workload:
    """A :class:`Workload` from :class:`WorkloadConfig` keyword arguments."""
    return Workload(WorkloadConfig(**options))
