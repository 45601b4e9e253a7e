"""Objective lifecycle events: an objective is a protocol run (fund, defund ...) on channels."""

from __future__ import annotations

from typing import ClassVar

import attrs

from chanlog import fields
from chanlog.events.base import Event

__all__ = [
    "OBJECTIVE_TYPES",
    "ObjectiveApproved",
    "ObjectiveCompleted",
    "ObjectiveCranked",
    "ObjectiveCreated",
    "ObjectiveRejected",
]

OBJECTIVE_TYPES = ("DirectFund", "DirectDefund", "VirtualFund", "VirtualDefund")


@attrs.define(frozen=True, slots=True, kw_only=True)
class ObjectiveCreated(Event):
    """A new objective exists, unapproved. ``participants``: 2..255 distinct addresses."""

    event_type: ClassVar[str] = "objective-created"
    group: ClassVar[str] = "objective"
    stream_fields: ClassVar[tuple[str, ...]] = ("objective_id",)

    objective_id: str = attrs.field(validator=fields.bytes32)
    objective_type: str = attrs.field(validator=fields.one_of(*OBJECTIVE_TYPES))
    channel_id: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))
    participants: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=fields.optional_tuple,
        validator=fields.optional(fields.participants()),
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class ObjectiveApproved(Event):
    """The node agreed to run the objective; ``approver`` is the approving address."""

    event_type: ClassVar[str] = "objective-approved"
    group: ClassVar[str] = "objective"
    stream_fields: ClassVar[tuple[str, ...]] = ("objective_id",)

    objective_id: str = attrs.field(validator=fields.bytes32)
    approver: str | None = attrs.field(default=None, validator=fields.optional(fields.address))


@attrs.define(frozen=True, slots=True, kw_only=True)
class ObjectiveRejected(Event):
    """The objective was refused (by us or a peer); terminal."""

    event_type: ClassVar[str] = "objective-rejected"
    group: ClassVar[str] = "objective"
    stream_fields: ClassVar[tuple[str, ...]] = ("objective_id",)

    objective_id: str = attrs.field(validator=fields.bytes32)
    reason: str = attrs.field(validator=fields.text())
    error_code: str | None = attrs.field(
        default=None, validator=fields.optional(fields.text(min_length=1, max_length=64))
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class ObjectiveCranked(Event):
    """The objective's protocol advanced; ``waiting`` names what it now waits for
    (go-nitro's ``WaitingFor``)."""

    event_type: ClassVar[str] = "objective-cranked"
    group: ClassVar[str] = "objective"
    stream_fields: ClassVar[tuple[str, ...]] = ("objective_id",)

    objective_id: str = attrs.field(validator=fields.bytes32)
    side_effects_count: int = attrs.field(validator=fields.uint)
    waiting: str | None = attrs.field(
        default=None, validator=fields.optional(fields.text(max_length=256))
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class ObjectiveCompleted(Event):
    """The objective finished; terminal. ``final_channel_state`` is a state hash."""

    event_type: ClassVar[str] = "objective-completed"
    group: ClassVar[str] = "objective"
    stream_fields: ClassVar[tuple[str, ...]] = ("objective_id",)

    objective_id: str = attrs.field(validator=fields.bytes32)
    success: bool = attrs.field(validator=fields.bool_)
    final_channel_state: str | None = attrs.field(
        default=None, validator=fields.optional(fields.bytes32)
    )
