"""A durable consumer's lease, as one runner holds it: taken (waiting while another runner
holds it), renewed every third of its time to live by a heartbeat thread, and given up; so
that one runner of a name runs at a time (ADR 0026). A lease whose holder's process is gone
(killed on this machine) is taken over at once instead of waited out (ADR 0045)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.errors import ChanlogError, LeaseHeld, StorageError
from chanlog.failure_log import FailureLog
from chanlog.records import ConsumerState

__all__ = ["Lease", "holder_gone", "new_holder", "release_if_gone"]

logger = logging.getLogger("chanlog.bus")


def new_holder() -> str:
    """A runner identity unique across machines and processes: host, pid and a nonce, then
    the scope its pid means something in (:func:`holder_gone`), where the system says."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    scope = _pid_scope()
    return holder if scope is None else f"{holder}:{scope}"


@functools.cache
def _pid_scope() -> str | None:
    """The kernel boot and pid namespace this process's pids are numbers in, as 12 hex
    digits; ``None`` where the system does not say (no ``/proc``). Two containers may share
    a host name but not both, so a pid is only ever looked up where it means the same
    process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot} {namespace}".encode()).hexdigest()[:12]


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` (a :func:`new_holder` identity) names a process that no longer
    runs: one of this boot and pid namespace whose pid is free or a zombie. Anything else
    (another machine, another namespace, a pid taken again by another process, an identity
    of another form) is not known to be gone: its lease is waited out."""
    parts = holder.rsplit(":", 3)
    scope = _pid_scope()
    if len(parts) != 4 or scope is None or parts[3] != scope or not parts[1].isdecimal():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, as another user
        return False
    try:  # killed, not yet reaped by its parent
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # gone between the two looks
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X")


def release_if_gone(consumers: KeepsConsumers, name: str, holder: str | None) -> bool:
    """Give up the lease of consumer ``name`` on behalf of ``holder`` when that holder's
    process is gone (:func:`holder_gone`); return whether it was. The backend clears the
    lease only while ``holder`` still holds it, so a runner that took it meanwhile keeps it."""
    if holder is None or not holder_gone(holder):
        return False
    logger.warning(
        "consumer %s: the process holding its lease (%s) no longer runs; taking the lease over",
        name,
        holder,
    )
    consumers.release_lease(name, holder)
    return True


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
        """Set when a renewal found another holder, or found that the lease had run out
        before it (anyone may have run or reset the consumer meanwhile): what this runner
        knows of the consumer no longer holds."""
        self.expires_at: float | None = None
        """When the lease this runner last took or renewed runs out, by the backend's
        clock (``None`` before it is taken)."""
        self.may_hold = False
        """Whether this runner may hold the lease: set by every try to take it (one reported
        failed may have landed), cleared when another holder is found or a release went
        through; :meth:`release` does nothing without it."""
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._beat_failures = {
            step: FailureLog(logger, f"consumer {name}: {step}")
            for step in ("renewing the lease", "recording its last error")
        }

    def take(self, *, wait: bool, stop: threading.Event | None) -> ConsumerState | None:
        """Take the lease and return the consumer's state; while another runner holds it,
        wait for it (looking a few times per lease period) when ``wait``, else raise
        :class:`~chanlog.errors.LeaseHeld`. ``None`` when ``stop`` was set meanwhile."""
        # Each gone holder is released once: one that a backend does not clear is then
        # waited out like a running one, not released again in a loop.
        released: set[str | None] = set()
        while True:
            self.may_hold = True
            try:
                state = self.consumers.acquire_lease(self.name, self.holder, self.ttl)
                self.expires_at = state.lease_expires_at
                return state
            except LeaseHeld as held:
                self.may_hold = False
                if held.holder not in released and release_if_gone(
                    self.consumers, self.name, held.holder
                ):
                    released.add(held.holder)
                    continue
                if not wait:
                    raise
                pause = min(self.ttl / 4, 1.0)
                logger.info("consumer %s: %s; waiting", self.name, held)
                if stop is not None and stop.wait(pause):
                    return None
                if stop is None:
                    time.sleep(pause)

    def keep(self, after_renewal: Callable[[], None] | None = None) -> None:
        """Renew the lease every third of its time to live, in a thread, until
        :meth:`stop_keeping` (or until a renewal finds another holder: then :attr:`lost`).
        ``after_renewal`` is called in that thread after each renewal (see :meth:`beat`)."""
        self._heartbeat = threading.Thread(
            target=self._beat,
            args=(after_renewal,),
            name=f"chanlog-lease-{self.name}",
            daemon=True,
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
        """Give the lease up if this runner :attr:`may_hold` it, so another runner takes it
        at once (a failure is logged: the lease then runs out by itself)."""
        if not self.may_hold:
            return
        try:
            self.consumers.release_lease(self.name, self.holder)
            self.may_hold = False
        except StorageError as failure:  # the storage is away: no traceback to read
            logger.warning(
                "consumer %s: releasing the lease failed (%s); it runs out by itself",
                self.name,
                failure,
            )
        except ChanlogError:
            logger.exception("consumer %s: releasing the lease failed", self.name)

    def _beat(self, after_renewal: Callable[[], None] | None) -> None:
        interval = self.ttl / 3
        stop = self._stop
        while not stop.wait(interval):
            if not self.beat(after_renewal):
                return

    def _ran_out(self, expires_at: float | None) -> bool:
        """Whether a renewal that set the lease to run out at ``expires_at`` came after the
        lease had run out (renewals failed for longer than its time to live): nobody held
        it meanwhile, so another runner may have run the consumer, or an operator reset it,
        and this runner's next commit would undo that. Then :attr:`lost` is set: the runner
        lets go and takes the lease again like a new runner (ADR 0064). The lease ran out
        when the renewal's own time (its expiry less the time to live) is past the expiry
        of the one before, both by the backend's clock; the runner's commits also extend a
        lease, so a late renewal may be taken for one after a lapse: the cost is records
        handed over again, never a commit over another's."""
        before, self.expires_at = self.expires_at, expires_at
        if before is None or expires_at is None or expires_at - self.ttl <= before:
            return False
        logger.error(
            "consumer %s: its lease ran out before it could be renewed; taking it again and "
            "going on from the stored position",
            self.name,
        )
        self.lost.set()
        return True

    def beat(self, after_renewal: Callable[[], None] | None = None) -> bool:
        """One beat of the heartbeat: renew the lease, then call ``after_renewal``. A
        storage failure of either is logged, naming which failed, and tried again at the
        next beat; False when the renewal found another holder, or found that the lease
        had run out before it (:attr:`lost` is set)."""
        step = "renewing the lease"
        try:
            state = self.consumers.acquire_lease(self.name, self.holder, self.ttl)
            self._beat_failures[step].succeeded()
            if self._ran_out(state.lease_expires_at):
                return False
            if after_renewal is not None:
                step = "recording its last error"
                after_renewal()
        except LeaseHeld:  # the renewal, or a write after it, found another holder
            logger.error("consumer %s: lost its lease; stopping", self.name)
            self.may_hold = False
            self.lost.set()
            return False
        except StorageError as failure:  # the storage is away: no traceback to read
            self._beat_failures[step].failed(failure, logging.WARNING)
            return True
        except ChanlogError as failure:
            self._beat_failures[step].failed(failure, logging.ERROR, with_traceback=True)
            return True
        if after_renewal is not None:
            self._beat_failures[step].succeeded()
        return True
