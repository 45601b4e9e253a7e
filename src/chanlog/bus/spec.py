"""What a durable consumer is: a name, subject patterns, a start and its delivery settings."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.subjects import SubjectPattern, parse_patterns
from chanlog.errors import InvalidArgument
from chanlog.records import ConsumerState

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_COMMIT_EVERY",
    "DEFAULT_COMMIT_INTERVAL",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_MAX_DELIVER",
    "ConsumerSpec",
    "Start",
    "beyond_the_end",
    "check_start",
]

DEFAULT_MAX_DELIVER = 5
"""Tries per record before it is parked."""
DEFAULT_BACKOFF = (0.1, 0.5, 2.0, 5.0)
"""Seconds to wait before the 2nd, 3rd, 4th... try (the last one repeats)."""
DEFAULT_COMMIT_EVERY = 1000
"""Records handled between position commits (at least once: a crash hands back at most
these many, or what :data:`DEFAULT_COMMIT_INTERVAL` saw). A durable commit costs an fsync:
every 100 records it took a quarter of a SQLite consumer's time; every 1,000, a few
percent (ADR 0026)."""
DEFAULT_COMMIT_INTERVAL = 0.2
"""Seconds after which a handled record's position is committed anyway."""
DEFAULT_LEASE_TTL = 15.0
"""Seconds a runner's lease lasts without renewal (the runner renews it a third of the way):
how long a second runner waits after the first one died."""

Start = str | int
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def check_start(start: object) -> Start:
    """``"earliest"``, ``"latest"`` or an offset >= 0.

    Raises:
        InvalidArgument: anything else.
    """
    if start in ("earliest", "latest"):
        return str(start)
    if type(start) is int and start >= 0:
        return start
    raise InvalidArgument(f'start must be "earliest", "latest" or an offset >= 0, got {start!r}')


def beyond_the_end(length: int) -> str:
    """What to do about a new consumer's start beyond the end of a log of ``length`` records."""
    return (
        f'start it at "earliest", "latest" or an offset up to {length} (a log shorter than '
        "its start was chosen for may have lost records: a backup restored, a failover to a "
        "replica that was behind)"
    )


def _name(_instance: Any, _attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidArgument(
            f"a consumer name is 1 to 200 letters, digits, '_', '-' and '.', got {value!r}"
        )


def _patterns(value: object) -> tuple[SubjectPattern, ...]:
    if isinstance(value, tuple) and all(isinstance(item, SubjectPattern) for item in value):
        return value
    return parse_patterns(value)  # type: ignore[arg-type]


def _positive_int(_instance: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise InvalidArgument(f"{attribute.name} must be an int >= 1, got {value!r}")


def _seconds(_instance: Any, attribute: Any, value: Any) -> None:
    if type(value) not in (int, float) or not 0 < value < 10**6:
        raise InvalidArgument(f"{attribute.name} must be seconds > 0, got {value!r}")


def _backoff(value: object) -> tuple[float, ...]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Iterable) or isinstance(value, str):
        raise InvalidArgument(f"backoff must be a list of seconds, got {value!r}")
    delays = tuple(value)
    if not delays or any(
        isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600
        for delay in delays
    ):
        raise InvalidArgument(
            f"backoff must be a non-empty list of seconds between 0 and 3600, got {value!r}"
        )
    return tuple(float(delay) for delay in delays)


@attrs.frozen
class ConsumerSpec:
    """A durable consumer's definition.

    Attributes:
        name: unique per log (letters, digits, ``_``, ``-``, ``.``).
        subjects: the patterns it matches (default ``>``: every record).
        start: where a new consumer starts: ``"earliest"`` (offset 0), ``"latest"`` (the
            end of the log when it is created) or an offset. Ignored once it exists: it
            resumes from its stored position (``reset`` moves it).
        max_deliver: tries per record before it is parked.
        backoff: seconds before each retry (the last value repeats).
        commit_every: handled records between position commits.
        commit_interval: seconds after which the position is committed anyway.
        lease_ttl: seconds a runner's lease lasts without renewal.
        batch_size: records read from the log at a time.
    """

    name: str = attrs.field(validator=_name)
    subjects: tuple[SubjectPattern, ...] = attrs.field(
        default=(SubjectPattern(">", (">",)),), converter=_patterns
    )
    start: Start = attrs.field(default="earliest", converter=check_start)
    max_deliver: int = attrs.field(default=DEFAULT_MAX_DELIVER, validator=_positive_int)
    backoff: tuple[float, ...] = attrs.field(default=DEFAULT_BACKOFF, converter=_backoff)
    commit_every: int = attrs.field(default=DEFAULT_COMMIT_EVERY, validator=_positive_int)
    commit_interval: float = attrs.field(default=DEFAULT_COMMIT_INTERVAL, validator=_seconds)
    lease_ttl: float = attrs.field(default=DEFAULT_LEASE_TTL, validator=_seconds)
    batch_size: int = attrs.field(default=500, validator=_positive_int)

    @property
    def subject_texts(self) -> tuple[str, ...]:
        """The patterns as written."""
        return tuple(pattern.text for pattern in self.subjects)

    def first_position(self, length: int) -> int:
        """Where the consumer starts when it is created on a log of ``length`` records.

        Raises:
            InvalidArgument: ``start`` is an offset beyond the end of the log.
        """
        start = self.start
        if start == "earliest":
            return 0
        if start == "latest":
            return length
        assert isinstance(start, int)
        if start > length:
            raise InvalidArgument(
                f"consumer {self.name!r}: start {start} is beyond the end of the log "
                f"(length {length}); {beyond_the_end(length)}"
            )
        return start

    def ensure(self, keeper: KeepsConsumers, length: int) -> ConsumerState:
        """Create the consumer in ``keeper`` at :meth:`first_position` on a log of
        ``length`` records unless it exists; record its subjects either way.

        ``start`` matters only when the consumer is created: one that exists resumes from its
        stored position even when ``start`` lies past the end of the log (a log that lost
        records, ADR 0043), rather than wait, refused, for the log to grow past it.

        Raises:
            InvalidArgument: the consumer is new and ``start`` is beyond the end of the log.
        """
        try:
            position = self.first_position(length)
        except InvalidArgument:
            if keeper.consumer_state(self.name) is None:
                raise
            # Not used, the consumer exists; were it deleted meanwhile, it would start at the
            # end, before its start: nothing skipped.
            position = length
        return keeper.ensure_consumer(self.name, position, self.subject_texts)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2, 3, ...)."""
        return self.backoff[min(attempt - 2, len(self.backoff) - 1)]
