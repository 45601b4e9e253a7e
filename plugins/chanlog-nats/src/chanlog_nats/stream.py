"""The relay's JetStream stream: created or checked at start, and read back to learn the
last record it holds (ADR 0028)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
from nats.js.api import StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from chanlog.errors import ConfigError, DecodeError
from chanlog_nats.mapping import MSG_ID, Envelope, read_envelope

__all__ = ["StreamSettings", "StreamTail", "ensure_stream", "read_tail"]

logger = logging.getLogger("chanlog.nats")

SUBJECTS_OVERLAP = 10065
"""JetStream's error code for a stream whose subjects overlap another stream's."""

SCAN_BACK = 1000
"""How many messages :func:`read_tail` looks back, past messages chanlog did not publish,
for the last record (a stream should hold only one node's records)."""


@attrs.frozen
class StreamSettings:
    """The stream a relay publishes to.

    Attributes:
        name: the stream's name.
        subjects: its subjects (``<prefix>.>``).
        duplicate_window: seconds within which a ``Nats-Msg-Id`` seen before is dropped.
        storage: ``"file"`` or ``"memory"``.
        replicas: copies kept by a clustered server.
    """

    name: str
    subjects: tuple[str, ...]
    duplicate_window: float
    storage: str
    replicas: int = 1


@attrs.frozen
class StreamTail:
    """Where a stream ends.

    Attributes:
        last_seq: the stream sequence of its last message (0: empty).
        offset: the offset of the last chanlog record in it (``None``: none).
        msg_id: that record's ``Nats-Msg-Id``.
        envelope: that record's claims (its offset, event id and chain hash), for a check
            against the log.
        seq: that record's stream sequence (0: none).
    """

    last_seq: int
    offset: int | None = None
    msg_id: str | None = None
    envelope: Envelope | None = None
    seq: int = 0


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the stream, or check that the existing one has the subjects and the storage
    asked for (its duplicate window is updated when it differs).

    Raises:
        ConfigError: the existing stream does not capture the subjects, or keeps its
            messages in another storage; or the stream cannot be created because another
            stream captures some of its subjects.
    """
    storage = StorageType(settings.storage)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        await _create(js, settings, storage)
        return
    config = info.config
    missing = [subject for subject in settings.subjects if subject not in (config.subjects or [])]
    if missing:
        raise ConfigError(
            f"the JetStream stream {settings.name} exists with subjects {config.subjects}, "
            f"not {list(settings.subjects)}: use another stream name for this node, or add "
            f"{', '.join(missing)} to it",
            key="stream",
        )
    if config.storage is not None and config.storage != storage:
        kept = StorageType(config.storage).value
        raise ConfigError(
            f"the JetStream stream {settings.name} keeps its messages in {kept} "
            f"storage, not {settings.storage} (storage cannot be changed; use another stream)",
            key="storage",
        )
    if abs((config.duplicate_window or 0) - settings.duplicate_window) > 1e-3:
        await js.update_stream(config.evolve(duplicate_window=settings.duplicate_window))
        logger.info(
            "JetStream stream %s: duplicate window set to %s s",
            settings.name,
            settings.duplicate_window,
        )


async def _create(js: JetStreamContext, settings: StreamSettings, storage: StorageType) -> None:
    try:
        await js.add_stream(
            StreamConfig(
                name=settings.name,
                subjects=list(settings.subjects),
                duplicate_window=settings.duplicate_window,
                storage=storage,
                num_replicas=settings.replicas,
            )
        )
    except BadRequestError as exc:
        if exc.err_code != SUBJECTS_OVERLAP:
            raise
        # Not NATS being away: retrying cannot help until an operator acts, so say who.
        other = await _capturing(js, settings.subjects)
        raise ConfigError(
            f"the JetStream stream {settings.name} cannot be created: {other} on the server "
            f"already captures some of its subjects {list(settings.subjects)} (a stream of "
            "another node, or one left behind): delete that stream if nothing uses it, or "
            "give this node another subject prefix ([bus] prefix, or the relay's prefix "
            "option)",
            key="stream",
        ) from exc
    logger.info("created the JetStream stream %s (%s)", settings.name, settings.subjects)


async def _capturing(js: JetStreamContext, subjects: tuple[str, ...]) -> str:
    """The stream that captures some of ``subjects``, in words."""
    for subject in subjects:
        try:
            return f"the stream {await js.find_stream_name_by_subject(subject)}"
        except Exception:  # only for the message: any failure says less
            continue
    return "another stream"


Accept = Callable[[Envelope, bytes], str | None]
"""Checks a message's claims and body: ``None`` when it is a record of this log, else why
not."""


async def read_tail(
    js: JetStreamContext, stream: str, accept: Accept | None = None
) -> StreamTail | None:
    """The stream's last chanlog record, looking back (at most :data:`SCAN_BACK`
    messages) past messages chanlog did not publish and those ``accept`` refuses;
    ``None`` when the stream does not exist."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return None
    last_seq = info.state.last_seq
    first_seq = max(info.state.first_seq, 1, last_seq - SCAN_BACK)
    for seq in range(last_seq, first_seq - 1, -1):
        try:
            message = await js.get_msg(stream, seq=seq)
        except NotFoundError:  # deleted
            continue
        try:
            envelope = read_envelope(message.headers)
            problem = None if accept is None else accept(envelope, message.data or b"")
            if problem is not None:
                raise DecodeError(problem)
        except DecodeError as exc:
            logger.warning(
                "JetStream stream %s: message %d is not a chanlog record (%s); looking back",
                stream,
                seq,
                exc,
            )
            continue
        return StreamTail(last_seq, envelope.offset, (message.headers or {})[MSG_ID], envelope, seq)
    return StreamTail(last_seq)
