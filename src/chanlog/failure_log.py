"""How a background retry loop says that something keeps failing: once when it starts, again
when it changes or after a long while, and once when it stops.

A loop that logs every failed try (the store's watcher of a shared log retries every second)
fills an operator's log with the same lines, tracebacks included, for as long as the cause
lasts: an hour of a database away is 3,600 of them, and the first line, the one that says
when it began, scrolls out of sight. A failure that repeats says nothing new; how long it has
lasted, and that it is over, are what the operator needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["FailureLog"]

REMIND_EVERY = 60.0
"""Seconds between two lines about the same failure that goes on."""


class FailureLog:
    """The log lines of one retry loop's failures.

    Args:
        logger: where the lines go.
        what: what fails, as the start of a sentence (``"watching the shared log"``).
        consequence: what a failure means for the user, appended to its first line.
        remind_every: seconds between two lines about a failure that goes on.
        clock: the monotonic clock (a test's own).
        then: what happens next, ending a failure's lines (``""``: nothing is said).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        consequence: str = "",
        remind_every: float = REMIND_EVERY,
        clock: Callable[[], float] = time.monotonic,
        then: str = "retrying",
    ) -> None:
        self._logger = logger
        self._what = what
        self._consequence = f"; {consequence}" if consequence else ""
        self._remind_every = remind_every
        self._clock = clock
        self._then = f"; {then}" if then else ""
        self._failure: tuple[type[BaseException], str] | None = None
        self._since = 0.0
        self._said_at = 0.0
        self._tries = 0

    @property
    def failing(self) -> bool:
        """Whether the last try failed."""
        return self._failure is not None

    def failed(self, error: BaseException, level: int, *, with_traceback: bool = False) -> None:
        """A try failed with ``error``: say so at ``level`` (with its traceback when asked)
        if it is new or differs from the last one, or if the same has gone on for
        ``remind_every`` seconds since it was last said."""
        now = self._clock()
        failure = (type(error), str(error))
        if failure != self._failure:
            if self._failure is None:
                self._since, self._tries = now, 0
            self._failure, self._said_at = failure, now
            self._tries += 1
            self._logger.log(
                level,
                "%s failed (%s: %s)%s%s",
                self._what,
                type(error).__name__,
                error,
                self._consequence,
                self._then,
                exc_info=error if with_traceback else None,
            )
            return
        self._tries += 1
        if now - self._said_at >= self._remind_every:
            self._said_at = now
            self._logger.log(
                level,
                "%s still fails after %d tries over %.0f s (%s: %s)%s",
                self._what,
                self._tries,
                now - self._since,
                type(error).__name__,
                error,
                self._then,
            )

    def succeeded(self) -> None:
        """A try succeeded: after failures, say that it works again and how long it did not."""
        if self._failure is None:
            return
        self._logger.warning(
            "%s works again, after %d failed tries over %.0f s",
            self._what,
            self._tries,
            self._clock() - self._since,
        )
        self._failure = None
