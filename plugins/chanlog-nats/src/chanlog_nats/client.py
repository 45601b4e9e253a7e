"""A NATS connection for synchronous callers: nats-py is asyncio, chanlog's runners, stores
and ingest loops are threads, so each part runs its client on a private event loop in a
daemon thread of its own and calls into it with :meth:`NatsThread.call`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from chanlog.errors import StorageError

__all__ = ["FastHeaderClient", "NatsThread", "describe"]

logger = logging.getLogger("chanlog.nats")

T = TypeVar("T")

RECONNECT_WAIT = 0.25
"""Seconds between reconnection attempts (nats-py retries forever)."""


_SPACE = re.compile(r"\s")


def describe(exc: BaseException) -> str:
    """A NATS failure in words for a log line or a status. A server that has JetStream off
    (or a cluster that has not elected its JetStream leader yet) answers no JetStream
    request: nats-py says ``ServiceUnavailableError: code=None ...`` or ``no responders``."""
    if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return (
            "JetStream does not answer (no responders): is JetStream enabled on the server "
            "(nats-server -js)?"
        )
    return f"{type(exc).__name__}: {exc}"


class FastHeaderClient(Client):
    """nats-py's client with a quicker header parser: the stock one tests every character
    of every header name with a generator (a third of what an ingest spends per message,
    chanlog's messages carrying five headers). Same rules: ``Name: Value`` lines, ASCII
    names without whitespace, values decoded as UTF-8 with replacement."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if _SPACE.search(key) is None:
                headers[key] = value.strip().decode("utf-8", "replace")
        return headers


class NatsThread:
    """An event loop in a daemon thread, and one NATS connection made on it.

    Args:
        url: the server (several, comma-separated, for a cluster).
        name: the connection's name (shown by the server's monitoring).
        connect_timeout: seconds one connection attempt may take.
    """

    def __init__(self, url: str, name: str, *, connect_timeout: float = 2.0) -> None:
        self.url = url
        self.name = name
        self._connect_timeout = connect_timeout
        self.loop = asyncio.new_event_loop()
        self.client: Client | None = None
        self.connected = threading.Event()
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"chanlog-nats-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result (from another thread).

        Raises:
            TimeoutError: it took longer than ``timeout`` seconds (it is cancelled).
            Exception: whatever it raised.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"NATS ({self.url}): no answer within {timeout} s") from None

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start ``coroutine`` on the loop without waiting."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def connect(self) -> Client:
        """The connection (made on first need; nats-py then reconnects by itself, forever,
        buffering what is published meanwhile)."""
        if self.client is not None:
            return self.client

        async def disconnected() -> None:
            self.connected.clear()
            if self._closing:
                return
            logger.warning("NATS %s: disconnected from %s", self.name, self.url)

        async def reconnected() -> None:
            self.connected.set()
            logger.warning("NATS %s: reconnected to %s", self.name, self.url)
            if self.on_reconnect is not None:
                await self.on_reconnect()

        async def error(exc: Exception) -> None:
            logger.debug("NATS %s: %r", self.name, exc)

        client = FastHeaderClient()
        # nats-py annotates these seconds as int; it waits on them as floats.
        seconds: Any = {
            "connect_timeout": self._connect_timeout,
            "reconnect_time_wait": RECONNECT_WAIT,
        }
        await client.connect(
            servers=[url.strip() for url in self.url.split(",")],
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            ping_interval=5,
            max_outstanding_pings=2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            **seconds,
        )
        self.client = client
        self.connected.set()
        return client

    def connect_now(self, timeout: float) -> Client:
        """Connect from another thread.

        Raises:
            StorageError: the server cannot be reached.
        """
        try:
            return self.call(self.connect(), timeout)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise StorageError(f"cannot reach NATS at {self.url}: {describe(exc)}") from exc

    def close(self, timeout: float = 5.0) -> None:
        """Drain nothing, close the connection and stop the loop. Idempotent."""
        if self.loop.is_closed():
            return
        self._closing = True
        if self.loop.is_running():
            try:
                self.call(self._close(), timeout)
            except Exception:  # closing must not fail the caller's shutdown
                logger.exception("NATS %s: closing the connection failed", self.name)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()

    async def _close(self) -> None:
        client = self.client
        self.client = None
        if client is not None and not client.is_closed:
            await client.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
