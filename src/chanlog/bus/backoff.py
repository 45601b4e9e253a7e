"""How long the bus waits before trying again after its store failed (a database
restarting, a connection dropped): one backoff for a running consumer
(:meth:`~chanlog.bus.runner.ConsumerRunner.run`) and for an ingest (``chanlog-nats``)."""

from __future__ import annotations

__all__ = ["storage_retry_pause"]


def storage_retry_pause(failures: int) -> float:
    """Seconds to wait after the ``failures``-th storage failure in a row (a database
    restarting, a connection dropped) before trying again: 0.1 s, doubling up to 5 s."""
    # The exponent stops at 6 (6.4 s): an outage of hours never overflows a float.
    return min(0.1 * (1 << min(max(failures - 1, 0), 6)), 5.0)
