"""A consumer's lease while its storage is away: the heartbeat keeps trying and says what
failed in one line, without a traceback (an outage is expected, not a bug)."""

from __future__ import annotations

from typing import Any

import pytest

from chanlog.bus.lease import Lease
from chanlog.errors import StorageError
from chanlog.testing import FlakyBackend


def test_a_lease_the_storage_cannot_renew_or_release_is_one_line_each_time(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database outage is expected: the heartbeat says what failed in one line, without
    a traceback, and keeps trying; the runner's lease survives a short outage."""
    backend = FlakyBackend()
    backend.ensure_consumer("c", 0, [])
    lease = Lease(backend, "c", "me", ttl=60.0)
    assert lease.take(wait=False, stop=None) is not None
    acquire = backend.acquire_lease
    failures = {"left": 3}

    def away(name: str, holder: str, ttl: float) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("the server went away")
        return acquire(name, holder, ttl)

    monkeypatch.setattr(backend, "acquire_lease", away)
    monkeypatch.setattr(
        backend, "release_lease", lambda name, holder: away(name, holder, 0) and None
    )
    with caplog.at_level("WARNING", logger="chanlog.bus"):
        for _ in range(4):  # three beats fail, the fourth renews
            assert lease.beat()
        failures["left"] = 1
        lease.release()
    # Once (each failed beat said it), and its end once.
    renewals = [r for r in caplog.records if "renewing the lease failed" in r.getMessage()]
    assert len(renewals) == 1
    assert "the server went away" in renewals[0].getMessage() and not renewals[0].exc_info
    assert [r for r in caplog.records if "renewing the lease works again" in r.getMessage()]
    released = [r for r in caplog.records if "releasing the lease failed" in r.getMessage()]
    assert len(released) == 1
    assert not released[0].exc_info
    assert "runs out by itself" in released[0].getMessage()
    assert not lease.lost.is_set()


def test_a_beat_says_which_of_its_writes_failed(caplog: pytest.LogCaptureFixture) -> None:
    """The renewal went through and writing the last error after it failed: the line says
    so, not that the renewal failed (an operator would look for the wrong outage)."""
    backend = FlakyBackend()
    backend.ensure_consumer("c", 0, [])
    lease = Lease(backend, "c", "me", ttl=600.0)
    assert lease.take(wait=False, stop=None) is not None

    def recording() -> None:
        raise StorageError("the server went away")

    with caplog.at_level("WARNING", logger="chanlog.bus"):
        assert lease.beat(recording)
        backend.fail_consumer_writes(1, writes=["acquire"])
        assert lease.beat(recording)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(
        "consumer c: recording its last error failed (StorageError: the server"
    )
    assert lines[1].startswith("consumer c: renewing the lease failed")
    assert not lease.lost.is_set()
