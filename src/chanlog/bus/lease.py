"""A durable consumer's lease, as one runner holds it: taken (waiting while another runner
holds it), renewed every third of its time to live by a heartbeat thread, and given up; so
that one runner of a name runs at a time (ADR 0026)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.errors import ChanlogError, LeaseHeld, StorageError
from chanlog.records import ConsumerState

__all__ = ["Lease", "new_holder"]

logger = logging.getLogger("chanlog.bus")


def new_holder() -> str:
    """A runner identity unique across machines and processes: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of consumer ``name`` for ``holder``, kept by ``consumers``.

    Args:
        consumers: the backend that keeps the consumer.
        name: the consumer's name.
        holder: the runner's identity (:func:`new_holder`).
        ttl: seconds a taken or renewed lease lasts.
    """

    def __init__(self, consumers: KeepsConsumers, name: str, holder: str, ttl: float) -> None:
        self.consumers = consumers
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.lost = threading.Event()
        """Set when a renewal found another holder: the lease is no longer this runner's."""
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def take(self, *, wait: bool, stop: threading.Event | None) -> ConsumerState | None:
        """Take the lease and return the consumer's state; while another runner holds it,
        wait for it (looking a few times per lease period) when ``wait``, else raise
        :class:`~chanlog.errors.LeaseHeld`. ``None`` when ``stop`` was set meanwhile."""
        while True:
            try:
                return self.consumers.acquire_lease(self.name, self.holder, self.ttl)
            except LeaseHeld as held:
                if not wait:
                    raise
                pause = min(self.ttl / 4, 1.0)
                logger.info("consumer %s: %s; waiting", self.name, held)
                if stop is not None and stop.wait(pause):
                    return None
                if stop is None:
                    time.sleep(pause)

    def keep(self) -> None:
        """Renew the lease every third of its time to live, in a thread, until
        :meth:`stop_keeping` (or until a renewal finds another holder: then :attr:`lost`)."""
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"chanlog-lease-{self.name}", daemon=True
        )
        self._heartbeat.start()

    def stop_keeping(self) -> None:
        """Stop renewing (waiting for the heartbeat thread), ready to be taken and kept
        again: :attr:`lost` is cleared."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        self._stop = threading.Event()
        self.lost.clear()

    def release(self) -> None:
        """Give the lease up, so another runner takes it at once (a failure is logged: the
        lease then runs out by itself)."""
        try:
            self.consumers.release_lease(self.name, self.holder)
        except StorageError as failure:  # the storage is away: no traceback to read
            logger.warning(
                "consumer %s: releasing the lease failed (%s); it runs out by itself",
                self.name,
                failure,
            )
        except ChanlogError:
            logger.exception("consumer %s: releasing the lease failed", self.name)

    def _beat(self) -> None:
        interval = self.ttl / 3
        stop = self._stop
        while not stop.wait(interval):
            try:
                self.consumers.acquire_lease(self.name, self.holder, self.ttl)
            except LeaseHeld:
                logger.error("consumer %s: lost its lease; stopping", self.name)
                self.lost.set()
                return
            except StorageError as failure:  # the storage is away: no traceback to read
                logger.warning(
                    "consumer %s: renewing the lease failed (%s); retrying", self.name, failure
                )
            except ChanlogError:
                logger.exception("consumer %s: renewing the lease failed; retrying", self.name)
