"""The ``objective`` projection: the lifecycle of every objective (DESIGN section 4).

created → unapproved → approved (→ cranked, stays approved) → completed; unapproved or
approved → rejected. Completed and rejected are terminal. At append time one more rule spans
objectives: a channel is owned by at most one approved, unfinished objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from chanlog import fields
from chanlog.errors import DecodeError
from chanlog.events.base import Event
from chanlog.events.messaging import MessageReceived, MessageSent
from chanlog.events.objective import (
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    ObjectiveRejected,
)
from chanlog.fields import InlineCheck
from chanlog.projections._data import Reader
from chanlog.projections._record import as_dict, record, replacer
from chanlog.projections.entity import EntityProjection, EntityStage, IndexValue

__all__ = [
    "APPROVED",
    "COMPLETED",
    "REJECTED",
    "UNAPPROVED",
    "ObjectiveProjection",
    "ObjectiveState",
]

UNAPPROVED = "unapproved"
APPROVED = "approved"
REJECTED = "rejected"
COMPLETED = "completed"
_TERMINAL = frozenset({REJECTED, COMPLETED})
_OWNER_KEY = "owner:"
"""Index prefix: ``owner:<channel id>`` → the objective that last took the channel."""


@record
class ObjectiveState:
    """One objective as of some offset.

    ``event_count`` counts the objective's own events (the create included); message
    traffic is counted separately in ``messages_sent`` / ``messages_received``.
    """

    objective_id: str
    objective_type: str
    channel_id: str | None
    participants: tuple[str, ...] | None
    status: str
    approver: str | None = None
    reject_reason: str | None = None
    reject_code: str | None = None
    success: bool | None = None
    final_channel_state: str | None = None
    crank_count: int = 0
    side_effects_total: int = 0
    waiting: str | None = None
    created_ms: int
    updated_ms: int
    terminal_ms: int | None = None
    event_count: int = 1
    messages_sent: int = 0
    messages_received: int = 0

    @property
    def is_terminal(self) -> bool:
        """True once completed or rejected."""
        return self.status in _TERMINAL

    @property
    def owns_channel(self) -> bool:
        """True while this objective holds its channel (approved and unfinished)."""
        return self.status == APPROVED and self.channel_id is not None


_evolve = replacer(ObjectiveState)
_Folder = Callable[
    ["ObjectiveProjection", "ObjectiveState | None", Any, str], ObjectiveState | None
]


class ObjectiveProjection(EntityProjection[ObjectiveState]):
    """Folds objective events (and counts an objective's messages) into
    :class:`ObjectiveState`, refusing the illegal transitions of DESIGN section 4."""

    name: ClassVar[str] = "objective"
    schema_version: ClassVar[int] = 1
    entity_id_check: ClassVar[InlineCheck | None] = fields.bytes32
    cross_entity_event_types: ClassVar[frozenset[type[Event]] | None] = frozenset(
        {ObjectiveApproved}
    )

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """Objective events and message-sent/received name their objective."""
        if type(event) in _FOLDERS:
            return (event.objective_id.lower(),)  # type: ignore[attr-defined]
        return ()

    def fold(
        self, state: ObjectiveState | None, event: Event, entity_id: str, offset: int
    ) -> ObjectiveState | None:
        """The objective after ``event`` (pure)."""
        folder = _FOLDERS.get(type(event))
        if folder is None:
            return state
        return folder(self, state, event, entity_id)

    # -- per event type ------------------------------------------------------------------

    def _created(
        self, state: ObjectiveState | None, event: ObjectiveCreated, entity_id: str
    ) -> ObjectiveState:
        if state is not None:
            raise self.refuse(
                f"already created at {state.created_ms}",
                entity_id=entity_id,
                event=event,
                rule="objective.created-once",
            )
        return ObjectiveState(
            objective_id=event.objective_id,
            objective_type=event.objective_type,
            channel_id=None if event.channel_id is None else event.channel_id.lower(),
            participants=event.participants,
            status=UNAPPROVED,
            created_ms=event.timestamp_ms,
            updated_ms=event.timestamp_ms,
        )

    def _existing(
        self, state: ObjectiveState | None, event: Event, entity_id: str
    ) -> ObjectiveState:
        if state is None:
            raise self.refuse(
                "the objective was never created",
                entity_id=entity_id,
                event=event,
                rule="objective.requires-created",
            )
        if state.status in _TERMINAL:
            raise self.refuse(
                f"the objective is {state.status} (terminal)",
                entity_id=entity_id,
                event=event,
                rule="objective.terminal",
            )
        return state

    def _in_status(
        self,
        state: ObjectiveState | None,
        event: Event,
        entity_id: str,
        status: str,
        rule: str,
    ) -> ObjectiveState:
        """The existing, non-terminal state, refused under ``rule`` unless in ``status``."""
        state = self._existing(state, event, entity_id)
        if state.status != status:
            raise self.refuse(
                f"the objective is {state.status}, not {status}",
                entity_id=entity_id,
                event=event,
                rule=rule,
            )
        return state

    def _approved(
        self, state: ObjectiveState | None, event: ObjectiveApproved, entity_id: str
    ) -> ObjectiveState:
        state = self._in_status(
            state, event, entity_id, UNAPPROVED, "objective.approve-requires-unapproved"
        )
        return _evolve(
            state,
            status=APPROVED,
            approver=event.approver,
            updated_ms=event.timestamp_ms,
            event_count=state.event_count + 1,
        )

    def _rejected(
        self, state: ObjectiveState | None, event: ObjectiveRejected, entity_id: str
    ) -> ObjectiveState:
        state = self._existing(state, event, entity_id)
        return _evolve(
            state,
            status=REJECTED,
            reject_reason=event.reason,
            reject_code=event.error_code,
            updated_ms=event.timestamp_ms,
            terminal_ms=event.timestamp_ms,
            event_count=state.event_count + 1,
        )

    def _cranked(
        self, state: ObjectiveState | None, event: ObjectiveCranked, entity_id: str
    ) -> ObjectiveState:
        state = self._in_status(
            state, event, entity_id, APPROVED, "objective.crank-requires-approved"
        )
        return _evolve(
            state,
            crank_count=state.crank_count + 1,
            side_effects_total=state.side_effects_total + event.side_effects_count,
            waiting=event.waiting,
            updated_ms=event.timestamp_ms,
            event_count=state.event_count + 1,
        )

    def _completed(
        self, state: ObjectiveState | None, event: ObjectiveCompleted, entity_id: str
    ) -> ObjectiveState:
        state = self._in_status(
            state, event, entity_id, APPROVED, "objective.complete-requires-approved"
        )
        return _evolve(
            state,
            status=COMPLETED,
            success=event.success,
            final_channel_state=event.final_channel_state,
            waiting=None,
            updated_ms=event.timestamp_ms,
            terminal_ms=event.timestamp_ms,
            event_count=state.event_count + 1,
        )

    def _message_sent(
        self, state: ObjectiveState | None, event: MessageSent, entity_id: str
    ) -> ObjectiveState | None:
        # Whether the objective must exist is the messages projection's rule; here a
        # message only counts toward an objective that exists.
        if state is None:
            return None
        return _evolve(state, messages_sent=state.messages_sent + 1)

    def _message_received(
        self, state: ObjectiveState | None, event: MessageReceived, entity_id: str
    ) -> ObjectiveState | None:
        if state is None:  # a peer may open an objective we have not created yet
            return None
        return _evolve(state, messages_received=state.messages_received + 1)

    # -- the one rule across objectives --------------------------------------------------

    def check(
        self,
        stage: EntityStage[ObjectiveState],
        event: Event,
        changes: list[tuple[str, ObjectiveState | None, ObjectiveState]],
    ) -> None:
        """Refuse approving an objective whose channel another approved, unfinished
        objective owns."""
        if type(event) is not ObjectiveApproved:
            return
        for entity_id, _, after in changes:
            channel = after.channel_id
            if channel is None:
                continue
            owner = stage.index_get(_OWNER_KEY + channel)
            if not isinstance(owner, str) or owner == entity_id:
                continue
            holder = stage.lookup(owner)
            if holder is not None and holder.owns_channel:
                raise self.refuse(
                    f"channel {channel} is owned by objective {owner} until it completes "
                    "or is rejected",
                    entity_id=entity_id,
                    event=event,
                    rule="objective.channel-owned",
                )

    def index_updates(
        self, event: Event, changes: list[tuple[str, ObjectiveState | None, ObjectiveState]]
    ) -> Iterable[tuple[str, IndexValue | None]]:
        """An approval takes the channel; a finished owner is recognised by its status, so
        releasing needs no entry."""
        if type(event) is not ObjectiveApproved:
            return ()
        return [
            (_OWNER_KEY + after.channel_id, entity_id)
            for entity_id, _, after in changes
            if after.channel_id is not None
        ]

    def owner_of(self, channel_id: str) -> str | None:
        """The objective that currently owns ``channel_id``, if any."""
        owner = self._index.get(_OWNER_KEY + channel_id.lower())
        if not isinstance(owner, str):
            return None
        state = self._committed(owner)
        return owner if state is not None and state.owns_channel else None

    # -- snapshot codec ------------------------------------------------------------------

    def dump_state(self, state: ObjectiveState) -> dict[str, Any]:
        """The state as a JSON object (participants as a list)."""
        data = as_dict(state)
        if state.participants is not None:
            data["participants"] = list(state.participants)
        return data

    def load_state(self, data: Any) -> ObjectiveState:
        """Read back :meth:`dump_state` output, strictly."""
        r = Reader(data, "objective")
        return ObjectiveState(
            objective_id=r.text("objective_id"),
            objective_type=r.text("objective_type"),
            channel_id=r.opt_text("channel_id"),
            participants=r.opt_texts("participants"),
            status=_status(r),
            approver=r.opt_text("approver"),
            reject_reason=r.opt_text("reject_reason"),
            reject_code=r.opt_text("reject_code"),
            success=r.opt_flag("success"),
            final_channel_state=r.opt_text("final_channel_state"),
            crank_count=r.uint("crank_count"),
            side_effects_total=r.uint("side_effects_total"),
            waiting=r.opt_text("waiting"),
            created_ms=r.uint("created_ms"),
            updated_ms=r.uint("updated_ms"),
            terminal_ms=r.opt_uint("terminal_ms"),
            event_count=r.uint("event_count"),
            messages_sent=r.uint("messages_sent"),
            messages_received=r.uint("messages_received"),
        )


def _status(reader: Reader) -> str:
    status = reader.text("status")
    if status not in (UNAPPROVED, APPROVED, REJECTED, COMPLETED):
        raise DecodeError(f"objective.status: unknown status {status!r}", path="objective.status")
    return status


_FOLDERS: dict[type[Event], _Folder] = {
    ObjectiveCreated: ObjectiveProjection._created,
    ObjectiveApproved: ObjectiveProjection._approved,
    ObjectiveRejected: ObjectiveProjection._rejected,
    ObjectiveCranked: ObjectiveProjection._cranked,
    ObjectiveCompleted: ObjectiveProjection._completed,
    MessageSent: ObjectiveProjection._message_sent,
    MessageReceived: ObjectiveProjection._message_received,
}
ObjectiveProjection.event_types = frozenset(_FOLDERS) | (
    ObjectiveProjection.cross_entity_event_types or frozenset()
)
