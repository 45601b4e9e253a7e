"""What a generated log must fold to, written down by the generator from its own plans."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from chanlog.errors import NotFound

if TYPE_CHECKING:
    from chanlog.store import EventStore

__all__ = ["Expectation", "ExpectedChannel", "ExpectedObjective"]


@attrs.frozen(kw_only=True)
class ExpectedObjective:
    """An objective's final state as the generator planned it."""

    objective_id: str
    objective_type: str
    channel_id: str
    status: str
    event_count: int
    messages_sent: int
    messages_received: int


@attrs.frozen(kw_only=True)
class ExpectedChannel:
    """A channel's final state as the generator planned it. Amount maps are keyed by
    lower-cased asset (``withdrawn``: by ``(recipient, asset)``)."""

    channel_id: str
    status: str
    supported_turn: int | None
    final_turn: int | None
    holdings: dict[str, int]
    deposited: dict[str, int]
    withdrawn: dict[tuple[str, str], int]
    challenge_active: bool
    challenge_stale: bool | None
    turn_num_record: int | None
    event_count: int


@attrs.frozen(kw_only=True)
class Expectation:
    """Every objective and channel of a generated log, keyed by lower-cased id."""

    objectives: dict[str, ExpectedObjective]
    channels: dict[str, ExpectedChannel]
    event_count: int

    def mismatches(self, store: EventStore, *, at: int | None = None) -> list[str]:
        """Compare with the store's reconstruction of every entity (as of ``at``; default
        the whole log) and describe each difference; empty when everything matches."""
        problems: list[str] = []
        for key, objective in self.objectives.items():
            try:
                state = store.reconstruct("objective", key, at)
            except NotFound:
                problems.append(f"objective {key}: missing")
                continue
            for name in (
                "objective_type",
                "status",
                "event_count",
                "messages_sent",
                "messages_received",
            ):
                _compare(problems, f"objective {key}", name, getattr(objective, name), state)
            _compare(
                problems, f"objective {key}", "channel_id", objective.channel_id.lower(), state
            )
        for key, channel in self.channels.items():
            try:
                state = store.reconstruct("channel", key, at)
            except NotFound:
                problems.append(f"channel {key}: missing")
                continue
            where = f"channel {key}"
            for name in (
                "status",
                "supported_turn",
                "final_turn",
                "turn_num_record",
                "event_count",
            ):
                _compare(problems, where, name, getattr(channel, name), state)
            for name in ("holdings", "deposited", "withdrawn"):
                _compare(problems, where, name, getattr(channel, name), state, as_dict=True)
            challenge = state.challenge
            if (challenge is not None) != channel.challenge_active:
                problems.append(
                    f"{where}: challenge active {challenge is not None}, expected "
                    f"{channel.challenge_active}"
                )
            elif challenge is not None and challenge.stale != channel.challenge_stale:
                problems.append(
                    f"{where}: challenge stale {challenge.stale}, expected "
                    f"{channel.challenge_stale}"
                )
        return problems


def _compare(
    problems: list[str],
    where: str,
    name: str,
    expected: object,
    state: object,
    *,
    as_dict: bool = False,
) -> None:
    actual = getattr(state, name)
    if as_dict:
        actual = dict(actual)
    if actual != expected:
        problems.append(f"{where}: {name} is {actual!r}, expected {expected!r}")
