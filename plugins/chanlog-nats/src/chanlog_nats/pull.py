"""Pulling a JetStream durable consumer in batches, leaner than nats-py's ``fetch`` (which
waits on a queue with a timer per message, the most expensive step of an ingest).

One inbox subscription collects what the server delivers for a pull request
(``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``); a request ends when the batch is full
or the server says it has nothing more before the request expires (a status message).
A message arriving late, after its request ended, is kept for the next pull: it was
delivered, and its acknowledgement is still due.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Puller"]

_HEARTBEAT = "100"  # an idle heartbeat or flow control: not the end of the request


class Puller:
    """Pulls batches from one durable consumer.

    Args:
        client: the connection.
        stream: the stream.
        durable: the durable consumer.
    """

    def __init__(self, client: Client, stream: str, durable: str) -> None:
        self._client = client
        self._request = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = client.new_inbox()
        self._messages: list[Msg] = []
        self._want = 0
        self._done = asyncio.Event()
        self._subscription: Subscription | None = None
        self.pending: int | None = None
        """Messages the consumer had not delivered yet, as of the last one received."""

    async def start(self) -> None:
        """Subscribe the inbox."""
        self._subscription = await self._client.subscribe(self._inbox, cb=self._receive)

    async def stop(self) -> None:
        """Unsubscribe the inbox: what arrives after is dropped (never acknowledged)."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        self._messages = []
        self._done.set()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most about ``timeout`` seconds for them."""
        self._want = batch - len(self._messages)
        if self._want > 0:
            self._done.clear()
            request = orjson.dumps({"batch": self._want, "expires": int(timeout * 1e9)})
            await self._client.publish(self._request, request, reply=self._inbox)
            # When the server's answer is lost, return what came.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout + 1.0)
        messages, self._messages = self._messages, []
        return messages

    async def _receive(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None and not msg.data:
            if status != _HEARTBEAT:  # 404 no messages, 408 expired, 409 ...: done
                self._done.set()
            return
        self._messages.append(msg)
        self.pending = msg.metadata.num_pending
        self._want -= 1
        if self._want <= 0:
            self._done.set()
