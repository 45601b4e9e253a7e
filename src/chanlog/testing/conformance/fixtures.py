"""The fixtures and knobs every conformance case class builds on.

A backend package subclasses :class:`~chanlog.testing.BackendConformance` (or a single case
class of :mod:`chanlog.testing.conformance`) and overrides :meth:`ConformanceFixtures.open_backend`,
and :meth:`ConformanceFixtures.open_read_only` when its factory takes ``read_only=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from chanlog.backends.base import Backend
from chanlog.store import EventStore

__all__ = ["DEADLINE", "ConformanceFixtures", "OpenBackend", "wait_until"]

OpenBackend = Callable[[], Backend]
"""Opens the log under test. Within one test every call opens the *same* log (a new handle
on it, for durable or shared backends); the first call of a test finds it empty (or, for a
durable backend with :attr:`ConformanceFixtures.opening_creates_the_log`, missing until a
writable handle creates it)."""

DEADLINE = 10.0
"""Seconds a test waits for something another thread or process does."""


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail the test after :data:`DEADLINE` seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE} s waiting for {what}")
        time.sleep(0.005)


class ConformanceFixtures:
    """The fixtures of the suite. Override ``open_backend`` (always) and ``open_read_only``
    (when the backend can be opened read-only); set the class variables to describe the
    backend."""

    durable: ClassVar[bool] = True
    """Whether a log survives closing its handle (reopen tests run when True)."""

    opening_creates_the_log: ClassVar[bool] = True
    """For a durable backend: whether the log does not exist before the test's first
    writable open (so a read-only open before it must be refused). Set it to False when the
    ``open_backend`` fixture prepares the log's storage itself."""

    # -- fixtures a subclass overrides ---------------------------------------------------

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        """Override: return a callable opening the log under test (see :data:`OpenBackend`)."""
        pytest.fail(f"{type(self).__name__} must override the open_backend fixture")

    @pytest.fixture
    def open_read_only(self) -> OpenBackend | None:
        """Override when the backend can be opened read-only: return a callable opening the
        *same* log as ``open_backend`` with ``read_only=True``. ``None`` (the default)
        skips the read-only cases."""
        return None

    # -- fixtures the suite builds on them -----------------------------------------------

    @pytest.fixture
    def opener(self, open_backend: OpenBackend) -> Iterator[OpenBackend]:
        """``open_backend`` that also closes every handle it opened when the test ends."""
        yield from _closing_what_it_opens(open_backend)

    @pytest.fixture
    def read_only_opener(self, open_read_only: OpenBackend | None) -> Iterator[OpenBackend]:
        """``open_read_only`` that closes what it opened; skips the test without one."""
        if open_read_only is None:
            pytest.skip("the suite was given no open_read_only (the backend has no read-only mode)")
        yield from _closing_what_it_opens(open_read_only)

    @pytest.fixture
    def backend(self, opener: OpenBackend) -> Backend:
        """A handle on a new, empty log."""
        return opener()

    @pytest.fixture
    def store(self, backend: Backend) -> Iterator[EventStore]:
        """A store on ``backend`` without projections (no transition rules apply)."""
        store = EventStore(backend, projections=[])
        yield store
        store.close()


def _closing_what_it_opens(open_backend: OpenBackend) -> Iterator[OpenBackend]:
    """Yield ``open_backend`` wrapped so that every handle it opened is closed afterwards
    (the body of the opener fixtures)."""
    opened: list[Backend] = []

    def open_tracked() -> Backend:
        backend = open_backend()
        opened.append(backend)
        return backend

    yield open_tracked
    for backend in opened:
        backend.close()
