"""Fixtures for the core store tests: synthetic events and a store without projections.

The storage mechanics (offsets, batches, idempotency, notification) are tested on a store whose
transition rules are off, so any event sequence is legal; the projection suites test the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from chanlog import EventStore, StateSigned
from chanlog_samples import make_signed


@pytest.fixture
def signed() -> Callable[..., StateSigned]:
    return make_signed


@pytest.fixture
def store() -> Iterator[EventStore]:
    with EventStore(projections=[]) as instance:
        yield instance
