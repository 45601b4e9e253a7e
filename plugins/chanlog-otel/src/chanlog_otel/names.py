"""The names chanlog's telemetry uses: the instrumentation scope, span and metric names, and
attribute keys (OpenTelemetry's messaging semantic conventions where they apply)."""

from __future__ import annotations

__all__ = [
    "BATCH_COUNT",
    "CONSUMER",
    "DESTINATION",
    "ENTITY_KIND",
    "ERROR_TYPE",
    "MESSAGE_ID",
    "OFFSET",
    "OPERATION_NAME",
    "OPERATION_TYPE",
    "RULE",
    "SCOPE",
    "SYSTEM",
    "SYSTEM_NAME",
]

SCOPE = "chanlog"
"""The tracer's and the meter's name."""

SYSTEM_NAME = "chanlog"
"""``messaging.system`` of the log and its consumers (a relay uses its broker's, ``nats``)."""

SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CONSUMER = "messaging.consumer.group.name"
ERROR_TYPE = "error.type"
OFFSET = "chanlog.offset"
"""The record's offset in the log (the first one's, for a batch)."""
RULE = "chanlog.rule"
"""The rule an append refusal broke (``InvalidTransition.rule``, ``expected version``...)."""
ENTITY_KIND = "chanlog.entity.kind"
"""The projection of a reconstructed entity (``channel``, ``objective``...)."""
