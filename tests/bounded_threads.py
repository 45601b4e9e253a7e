"""Test bodies run on a thread joined with a timeout, so that a deadlock fails the test
instead of hanging the suite (the subscription re-entrancy tests, core and NATS)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DEADLOCK", "bounded"]

DEADLOCK = 20.0  # seconds: far beyond what any of these bodies takes


def bounded(body: Callable[[], Any]) -> Any:
    """Run ``body`` on a thread; fail (not hang) when it does not end."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = body()
        except BaseException as exc:  # re-raised below, on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLOCK)
    assert not thread.is_alive(), "deadlock: the body did not end"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
