"""The one error hierarchy of chanlog.

Every error a caller can provoke with bad input derives from :class:`ChanlogError`, so a
node can catch chanlog's refusals without also swallowing its own bugs. Each error carries the
structured facts that explain it (field, rule, offset ...) as attributes, and a message that
names them, so the CLI can print one line and a program can branch on the attributes.
"""

from __future__ import annotations

__all__ = [
    "ChanlogError",
    "ConcurrencyError",
    "ConfigError",
    "DecodeError",
    "IntegrityError",
    "InvalidArgument",
    "InvalidEvent",
    "InvalidTransition",
    "LeaseHeld",
    "NotFound",
    "PluginError",
    "StorageError",
]


class ChanlogError(Exception):
    """Base class of every error chanlog raises on purpose."""


class InvalidArgument(ChanlogError, ValueError):
    """A call's argument is out of range (a negative offset, ``start > end`` ...)."""


class InvalidEvent(ChanlogError, ValueError):
    """An event (or a batch of events) failed validation.

    Attributes:
        event_type: wire name of the event class, when known.
        field: the offending field (a dotted path for nested values), when known.
        rule: what the value should have been.
        index: position in a batch, when the event was part of one.
    """

    def __init__(
        self,
        message: str,
        *,
        event_type: str | None = None,
        field: str | None = None,
        rule: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.field = field
        self.rule = rule
        self.index = index


class DecodeError(ChanlogError, ValueError):
    """Bytes or a mapping could not be turned into an event.

    Attributes:
        event_type: the wire name read from the input, when it got that far.
        path: the field path that failed (``"participants[1]"``), when known.
        offset: the log offset of the record being decoded, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        event_type: str | None = None,
        path: str | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.path = path
        self.offset = offset


class InvalidTransition(ChanlogError):
    """An event is an illegal transition for the entity it belongs to.

    Attributes:
        kind: the projection (``"objective"``, ``"channel"``, ``"messages"``...).
        entity_id: the entity whose state refused the event.
        event_type: wire name of the refused event.
        rule: a short, stable identifier of the rule that was broken.
        index: position in a batch, when the event was part of one.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        entity_id: str,
        event_type: str,
        rule: str,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.entity_id = entity_id
        self.event_type = event_type
        self.rule = rule
        self.index = index

    def at_index(self, index: int) -> InvalidTransition:
        """Return a copy of this error that also names the batch position."""
        return InvalidTransition(
            f"batch[{index}]: {self}",
            kind=self.kind,
            entity_id=self.entity_id,
            event_type=self.event_type,
            rule=self.rule,
            index=index,
        )


class ConcurrencyError(ChanlogError):
    """An ``expected_version`` did not match the stream's actual version.

    Attributes:
        stream: the entity stream that was checked.
        expected: the version the caller expected.
        actual: the version the stream had.
    """

    def __init__(self, message: str, *, stream: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.stream = stream
        self.expected = expected
        self.actual = actual


class NotFound(ChanlogError, LookupError):
    """The requested entity, snapshot, plugin or record does not exist."""


class IntegrityError(ChanlogError):
    """The log does not match its own hashes: it was changed outside chanlog.

    Attributes:
        offset: the first offset whose event id or chain hash does not match.
    """

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class StorageError(ChanlogError):
    """The storage backend failed or found a file it must not touch.

    Attributes:
        snapshot_offset: the offset of the stored snapshot whose row the backend cannot
            read (changed outside chanlog), when that is the failure: readers of snapshots
            skip that one, as one whose bytes do not match its hash.
    """

    def __init__(self, message: str, *, snapshot_offset: int | None = None) -> None:
        super().__init__(message)
        self.snapshot_offset = snapshot_offset


class PluginError(ChanlogError):
    """A plugin could not be loaded, two plugins claimed the same name, a hook raised, or
    what a plugin's factory built does not implement its protocol.

    Attributes:
        plugin: the plugin at fault, when known (its entry point's name, for an installed
            one).
    """

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class ConfigError(ChanlogError):
    """The configuration is invalid.

    Attributes:
        source: the file (or ``"<dict>"``/``"<kwargs>"``) the setting came from.
        key: the offending key, dotted (``"snapshots.every"``).
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.key = key


class LeaseHeld(ChanlogError):
    """A durable consumer is run by another runner, whose lease has not expired (or this
    runner's lease expired and another took it over).

    Attributes:
        consumer: the consumer's name.
        holder: who holds the lease (``None``: nobody; this runner lost it).
        expires_at: when that lease expires (unix seconds, the backend's clock), if held.
    """

    def __init__(
        self, message: str, *, consumer: str, holder: str | None, expires_at: float | None
    ) -> None:
        super().__init__(message)
        self.consumer = consumer
        self.holder = holder
        self.expires_at = expires_at
