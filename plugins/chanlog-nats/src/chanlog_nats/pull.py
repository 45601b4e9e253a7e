"""Pulling a JetStream durable consumer in batches, leaner than nats-py's ``fetch`` (which
waits on a queue with a timer per message, the most expensive step of an ingest).

One inbox subscription collects what the server delivers for a pull request
(``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``); a request ends when the batch is full
or the server says it has nothing more before the request expires (a status message).
A message arriving late, after its request ended, is kept for the next pull: it was
delivered, and its acknowledgement is still due.

A pull request to a consumer that does not exist (deleted, or its stream deleted) gets no
answer at all: no message, no status, not even "no responders". Nothing to tell it from a
lost answer but asking the server, so such a pull only raises a doubt
(:attr:`Puller.in_doubt`) for the caller to check; an idle consumer's pull ends with a
status ("request expired"), so an idle stream raises none.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

__all__ = ["Puller"]

_HEARTBEAT = "100"  # an idle heartbeat or flow control: not the end of the request
_NOTHING_NOW = ("404", "408")  # no messages, request expired: an idle consumer's answers


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
        self._answered = False
        self.pending: int | None = None
        """Messages the consumer had not delivered yet, as of the last one received."""
        self.in_doubt: str | None = None
        """Why the consumer may no longer exist, after a pull that got no message: no
        answer at all, or the status the server ended it with (``409 Consumer Deleted``);
        ``None`` after a pull answered as a live consumer answers."""

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
            self._answered = False
            request = orjson.dumps({"batch": self._want, "expires": int(timeout * 1e9)})
            await self._client.publish(self._request, request, reply=self._inbox)
            # When the server's answer is lost, return what came.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout + 1.0)
            if not self._answered and not self._messages:
                self.in_doubt = "a pull got no answer at all"
        messages, self._messages = self._messages, []
        if messages:
            self.in_doubt = None
        return messages

    async def _receive(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None and not msg.data:
            if status == _HEARTBEAT:
                return
            self._answered = True
            if status in _NOTHING_NOW:
                self.in_doubt = None
            else:  # 409 Consumer Deleted, or another reason the server stopped the pull
                description = headers.get(Header.DESCRIPTION, "") if headers else ""
                self.in_doubt = f"a pull ended with status {status} {description}".rstrip()
            self._done.set()
            return
        self._messages.append(msg)
        self.pending = msg.metadata.num_pending
        self._want -= 1
        if self._want <= 0:
            self._done.set()
