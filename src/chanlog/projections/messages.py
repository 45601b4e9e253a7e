"""The ``messages`` projection: every message we sent, received or dropped, and which of
the sent ones are still outstanding (un-acked) per peer (DESIGN section 4).

Rules: an ack names a message we sent and acks it once; we only send for an objective the
log has created. A message may be received for an objective we do not know yet (a peer can
open one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from chanlog import fields
from chanlog.events.base import Event
from chanlog.events.messaging import MessageAcked, MessageDropped, MessageReceived, MessageSent
from chanlog.events.objective import ObjectiveCreated
from chanlog.fields import InlineCheck
from chanlog.projections._data import Reader
from chanlog.projections._record import as_dict, record, replacer
from chanlog.projections.entity import EntityProjection, EntityStage, IndexValue

__all__ = ["MessageState", "MessagesProjection"]

_OBJECTIVE_KEY = "objective:"
"""Index prefix: ``objective:<id>`` → True once the objective was created."""


@record
class MessageState:
    """One message as of some offset."""

    message_id: str
    peer_id: str
    objective_id: str | None = None
    sent: bool = False
    received: bool = False
    acked: bool = False
    dropped: bool = False
    send_count: int = 0
    payload_type: str | None = None
    payload_size_bytes: int | None = None
    roundtrip_ms: int | None = None
    drop_reason: str | None = None
    drop_code: str | None = None
    event_count: int = 1
    created_ms: int
    updated_ms: int

    @property
    def outstanding(self) -> bool:
        """Sent by us and not acknowledged yet."""
        return self.sent and not self.acked


_evolve = replacer(MessageState)
_Folder = Callable[["MessagesProjection", "MessageState | None", Any, str], MessageState]


class MessagesProjection(EntityProjection[MessageState]):
    """Folds messaging events into :class:`MessageState` and keeps, per peer, the messages
    still waiting for an ack."""

    name: ClassVar[str] = "messages"
    schema_version: ClassVar[int] = 1
    entity_kind: ClassVar[str] = "message"
    entity_id_check: ClassVar[InlineCheck | None] = fields.bytes32
    cross_entity_event_types: ClassVar[frozenset[type[Event]] | None] = frozenset(
        {MessageSent, ObjectiveCreated}
    )

    def __init__(self) -> None:
        super().__init__()
        self._outstanding: dict[str, set[str]] = {}

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """Messaging events name their message (a drop may name none)."""
        if type(event) in _FOLDERS:
            message_id = event.message_id  # type: ignore[attr-defined]
            return () if message_id is None else (message_id.lower(),)
        return ()

    def fold(
        self, state: MessageState | None, event: Event, entity_id: str, offset: int
    ) -> MessageState | None:
        """The message after ``event`` (pure)."""
        folder = _FOLDERS.get(type(event))
        if folder is None:
            return state
        return folder(self, state, event, entity_id)

    def _new(self, event: Any) -> MessageState:
        return MessageState(
            message_id=event.message_id,
            peer_id=event.peer_id,
            objective_id=getattr(event, "objective_id", None),
            created_ms=event.timestamp_ms,
            updated_ms=event.timestamp_ms,
            event_count=0,
        )

    def _sent(self, state: MessageState | None, event: MessageSent, entity_id: str) -> MessageState:
        state = state or self._new(event)
        return _evolve(
            state,
            sent=True,
            send_count=state.send_count + 1,
            objective_id=state.objective_id or event.objective_id,
            payload_type=event.payload_type,
            payload_size_bytes=event.payload_size_bytes,
            event_count=state.event_count + 1,
            updated_ms=event.timestamp_ms,
        )

    def _received(
        self, state: MessageState | None, event: MessageReceived, entity_id: str
    ) -> MessageState:
        state = state or self._new(event)
        return _evolve(
            state,
            received=True,
            objective_id=state.objective_id or event.objective_id,
            payload_type=event.payload_type,
            payload_size_bytes=event.payload_size_bytes,
            event_count=state.event_count + 1,
            updated_ms=event.timestamp_ms,
        )

    def _acked(
        self, state: MessageState | None, event: MessageAcked, entity_id: str
    ) -> MessageState:
        if state is None or not state.sent:
            raise self.refuse(
                "no message-sent for this message",
                entity_id=entity_id,
                event=event,
                rule="messages.ack-unknown",
            )
        if state.acked:
            raise self.refuse(
                "the message is already acked",
                entity_id=entity_id,
                event=event,
                rule="messages.ack-once",
            )
        return _evolve(
            state,
            acked=True,
            roundtrip_ms=event.roundtrip_ms,
            event_count=state.event_count + 1,
            updated_ms=event.timestamp_ms,
        )

    def _dropped(
        self, state: MessageState | None, event: MessageDropped, entity_id: str
    ) -> MessageState:
        state = state or self._new(event)
        return _evolve(
            state,
            dropped=True,
            drop_reason=event.reason,
            drop_code=event.error_code,
            payload_size_bytes=event.payload_size_bytes or state.payload_size_bytes,
            event_count=state.event_count + 1,
            updated_ms=event.timestamp_ms,
        )

    # -- the rule that needs the objectives ----------------------------------------------

    def check(
        self,
        stage: EntityStage[MessageState],
        event: Event,
        changes: list[tuple[str, MessageState | None, MessageState]],
    ) -> None:
        """Refuse sending for an objective the log never created."""
        if type(event) is not MessageSent:
            return
        objective = event.objective_id.lower()
        if stage.index_get(_OBJECTIVE_KEY + objective) is None:
            raise self.refuse(
                f"objective {event.objective_id} was never created",
                entity_id=event.message_id.lower(),
                event=event,
                rule="messages.sent-requires-objective",
            )

    def index_updates(
        self, event: Event, changes: list[tuple[str, MessageState | None, MessageState]]
    ) -> Iterable[tuple[str, IndexValue | None]]:
        """Remember created objectives."""
        if type(event) is ObjectiveCreated:
            return ((_OBJECTIVE_KEY + event.objective_id.lower(), True),)
        return ()

    # -- outstanding per peer ------------------------------------------------------------

    def _on_commit(self, entity_id: str, before: MessageState | None, after: MessageState) -> None:
        was = before is not None and before.outstanding
        if was == after.outstanding:
            return
        if after.outstanding:
            self._outstanding.setdefault(after.peer_id, set()).add(entity_id)
        else:
            waiting = self._outstanding.get(after.peer_id)
            if waiting is not None:
                waiting.discard(entity_id)
                if not waiting:
                    del self._outstanding[after.peer_id]

    def _rebuild_derived(self) -> None:
        self._outstanding = {}
        for entity_id, state in self._resolve_all().items():
            if state.outstanding:
                self._outstanding.setdefault(state.peer_id, set()).add(entity_id)

    def outstanding(self, peer_id: str) -> list[MessageState]:
        """The messages sent to ``peer_id`` and not acked yet, oldest first."""
        states = [
            state
            for state in map(self._committed, self._outstanding.get(peer_id, ()))
            if state is not None
        ]
        return sorted(states, key=lambda state: (state.created_ms, state.message_id))

    def outstanding_counts(self) -> dict[str, int]:
        """Peer → how many of our messages it has not acked."""
        return {peer: len(ids) for peer, ids in sorted(self._outstanding.items())}

    def knows_objective(self, objective_id: str) -> bool:
        """Whether the log created this objective (what sending requires)."""
        return (_OBJECTIVE_KEY + objective_id.lower()) in self._index

    # -- snapshot codec ------------------------------------------------------------------

    def dump_state(self, state: MessageState) -> dict[str, Any]:
        """The state as a JSON object."""
        return as_dict(state)

    def load_state(self, data: Any) -> MessageState:
        """Read back :meth:`dump_state` output, strictly."""
        r = Reader(data, "messages")
        return MessageState(
            message_id=r.text("message_id"),
            peer_id=r.text("peer_id"),
            objective_id=r.opt_text("objective_id"),
            sent=r.flag("sent"),
            received=r.flag("received"),
            acked=r.flag("acked"),
            dropped=r.flag("dropped"),
            send_count=r.uint("send_count"),
            payload_type=r.opt_text("payload_type"),
            payload_size_bytes=r.opt_uint("payload_size_bytes"),
            roundtrip_ms=r.opt_uint("roundtrip_ms"),
            drop_reason=r.opt_text("drop_reason"),
            drop_code=r.opt_text("drop_code"),
            event_count=r.uint("event_count"),
            created_ms=r.uint("created_ms"),
            updated_ms=r.uint("updated_ms"),
        )


_FOLDERS: dict[type[Event], _Folder] = {
    MessageSent: MessagesProjection._sent,
    MessageReceived: MessagesProjection._received,
    MessageAcked: MessagesProjection._acked,
    MessageDropped: MessagesProjection._dropped,
}
MessagesProjection.event_types = frozenset(_FOLDERS) | (
    MessagesProjection.cross_entity_event_types or frozenset()
)
