"""The relay's publishing pipeline: records handed over by the runner's thread, published in
offset order on the relay's event loop with a bounded window of unacknowledged messages,
and put back in order after any failure (ADR 0028).

The order guard: every message but the first after a reconciliation carries
``Nats-Expected-Last-Msg-Id`` = the previous record's message id; the first carries
``Nats-Expected-Last-Sequence`` = the stream's last sequence as just read (the server forgets
its last message id when it restarts more than a duplicate window after that message, and a
sequence is never forgotten). So the server stores a message only right after its
predecessor: whatever fails, the stream holds a gapless prefix of the records, and the
pipeline's only recovery is to read where the stream ends and go on from there.

A failure (a refused or lost acknowledgement, a timeout, a reconnection) marks the pipeline
*broken*; the pump then reconciles: it flushes the connection, reads the stream's last
record, drops what the stream already holds from the window and resends the rest, in order,
under a new guard. It retries with backoff while NATS is unreachable; the runner's thread
waits while the window is full, so the consumer's lag grows and nothing is lost.

A stream that does not continue what was relayed to it (gone or made anew, ending below
what the pipeline stored, or ending with a record that is not this log's) is a failure like
an outage, retried with backoff and said once, and never gone on from
(:class:`~chanlog_nats.tail_check.TailCheck`, ADR 0049).

A record whose message (payload and headers) is larger than the server's ``max_payload``
cannot be published by any retry, and the records after it may not go first: the pipeline
stops at it, says so once as its failure (the record's offset, its size, the server's limit
and the remedy), which no reconciliation clears, and tries again every few seconds (a
server restarted with a larger ``max_payload`` is learned on reconnection) (ADR 0075).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from chanlog.errors import ChanlogError, ConfigError, IntegrityError
from chanlog_nats.client import NatsThread, describe
from chanlog_nats.mapping import EXPECTED_LAST_MSG_ID, EXPECTED_LAST_SEQUENCE, over_max_payload
from chanlog_nats.stream import Accept, StreamSettings, StreamTail, ensure_stream, read_tail
from chanlog_nats.tail_check import TailCheck

__all__ = ["Entry", "Pipeline"]

logger = logging.getLogger("chanlog.nats")

_SEND_SLICE = 64  # messages sent per turn of the pump before it lets acks in
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)  # seconds between reconciliation attempts
_WATCH_EVERY = 0.25  # seconds between looks for an acknowledgement that is late
_OVERSIZED_RETRY = 2.0  # seconds between tries of a record over the server's max_payload


class Entry:
    """One record in the window: its message, and where its publish stands."""

    __slots__ = ("body", "headers", "msg_id", "offset", "sent_at", "subject")

    def __init__(
        self, offset: int, msg_id: str, subject: str, body: bytes, headers: dict[str, str]
    ) -> None:
        self.offset = offset
        self.msg_id = msg_id
        self.subject = subject
        self.body = body
        self.headers = headers
        self.sent_at = 0.0


class Pipeline:
    """Publishes entries in order with at most ``window`` unacknowledged.

    Args:
        thread: the relay's NATS connection and event loop.
        settings: the stream (created or checked on the first reconciliation).
        window: the most messages in flight (sent, not yet acknowledged), and the most
            entries handed over and not yet durable.
        ack_timeout: seconds after which an unacknowledged message counts as lost.
        accept: what a stream's last message must pass to count as a record at all (a
            message that does not is looked past).
        check: what the stream's last record must pass to be gone on from (``None``:
            anything; a missing stream is then created whenever it is found missing).
    """

    def __init__(
        self,
        thread: NatsThread,
        settings: StreamSettings,
        window: int,
        ack_timeout: float,
        accept: Accept | None = None,
        check: TailCheck | None = None,
    ) -> None:
        self._thread = thread
        self._accept = accept
        self._check = check
        self.settings = settings
        self.window = window
        self.ack_timeout = ack_timeout
        self._cond = threading.Condition()
        # Guarded by _cond: the window (handed over, not acknowledged), what to send, and
        # the tokens of the messages sent since the last reconciliation.
        self._pending: deque[Entry] = deque()
        self._unsent: deque[Entry] = deque()
        self._by_token: dict[str, Entry] = {}
        self._broken = True  # the first thing the pump does is reconcile
        self._pumping = False
        self.tail_offset: int | None = None
        """The last offset the stream is known to hold."""
        self.failure: str | None = None
        """Why the pipeline is stuck, while it is (``None``: it is not)."""
        self.oversized: str | None = None
        """The failure of a record over the server's ``max_payload`` that stops the
        pipeline, until the server takes it (``None``: none)."""
        self._oversized_at = -1
        self._stalled = False
        self.reconciliations = 0
        self.published = 0
        self._closed = False
        self._interrupted = False
        # Loop-side only.
        self._prev_msg_id: str | None = None
        self._expect_seq = 0
        self._tokens = itertools.count()
        self._inbox = ""
        self._stream_checked = False
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- the runner's side ------------------------------------------------------------------

    def offer(self, entry: Entry) -> None:
        """Put ``entry`` (the next record, in offset order) in the window, waiting while it
        is full (however long NATS is away); an entry the stream already holds is done at
        once.

        Raises:
            ChanlogError: the pipeline was closed or :meth:`interrupt`-ed while waiting
                (the entry was not taken).
        """
        kick = False
        with self._cond:
            self._interrupted = False
            while len(self._pending) >= self.window and not self._closed:
                if self._interrupted:
                    raise ChanlogError(
                        f"the NATS relay to {self.settings.name} was interrupted while its "
                        f"window was full ({self.failure or 'waiting for acknowledgements'})"
                    )
                self._cond.wait(0.25)
            if self._closed:
                raise ChanlogError("the NATS relay is closed")
            tail = self.tail_offset
            if tail is not None and entry.offset <= tail:
                return
            self._pending.append(entry)
            self._unsent.append(entry)
            if not self._pumping:
                self._pumping = kick = True
        if kick:
            self._thread.loop.call_soon_threadsafe(self._kick)

    def settled(self) -> int | None:
        """The offset of the oldest record not yet acknowledged (``None``: none)."""
        with self._cond:
            return self._pending[0].offset if self._pending else None

    def in_flight(self) -> int:
        """Records handed over and not yet acknowledged."""
        with self._cond:
            return len(self._pending)

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the window to empty; return whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.25))
        return True

    def interrupt(self) -> None:
        """Make a wait for room in the window give up (see :meth:`offer`)."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting entries; wake whoever waits."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the loop's side ------------------------------------------------------------------

    def start(self) -> None:
        """Start the pump and the watchdog on the relay's loop (from any thread)."""
        self._thread.on_reconnect = self._reconnected
        self._thread.loop.call_soon_threadsafe(self._start_tasks)

    def _start_tasks(self) -> None:
        self._wake = asyncio.Event()
        self._wake.set()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump()), loop.create_task(self._watch())]

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _break(self, why: str) -> None:
        """Count the pipeline broken (call on the loop): the pump reconciles next."""
        with self._cond:
            if not self._broken:
                logger.warning("NATS relay to %s: %s; reconciling", self.settings.name, why)
            self._broken = True
        self._kick()

    async def _reconnected(self) -> None:
        # What was in flight may be lost or refused: go back to what the stream says.
        self._break("reconnected to NATS")

    async def _pump(self) -> None:
        assert self._wake is not None
        attempt = 0
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._stalled:  # a record no retry can publish now: not a busy loop
                self._stalled = False
                await asyncio.sleep(_OVERSIZED_RETRY)
            if self._broken:
                if not await self._try_reconcile(attempt):
                    attempt += 1
                    await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF)) - 1])
                    self._wake.set()
                    continue
                attempt = 0
            await self._send()

    async def _try_reconcile(self, attempt: int) -> bool:
        try:
            await self.reconcile()
        except (ConfigError, IntegrityError) as exc:
            # Retried (someone may fix the stream), but said once: not at every attempt.
            if self.failure != str(exc):
                logger.error("NATS relay to %s: %s", self.settings.name, exc)
            self.failure = str(exc)
            return False
        except Exception as exc:  # NATS unreachable or slow: retried with backoff
            self.failure = describe(exc)
            log = logger.warning if attempt in (0, 10) or attempt % 50 == 0 else logger.debug
            log("NATS relay to %s: cannot reconcile yet (%s)", self.settings.name, self.failure)
            return False
        self.failure = self.oversized  # reconciling does not make the record fit
        return True

    async def _client(self) -> tuple[Client, JetStreamContext]:
        if self._thread.client is None:
            self.failure = f"connecting to NATS at {self._thread.url}"
        client = await self._thread.connect()
        if not self._inbox:
            self._inbox = client.new_inbox()
            await client.subscribe(self._inbox + ".*", cb=self._on_ack)
        return client, client.jetstream(timeout=self.ack_timeout)

    async def reconcile(self) -> None:
        """Read where the stream ends and go on from there (creating the stream when it is
        missing and :class:`~chanlog_nats.tail_check.TailCheck` allows it).

        Raises:
            ConfigError: the stream exists with other subjects or storage.
            IntegrityError: the stream does not continue what was relayed to it.
            Exception: NATS does not answer (the pump retries with backoff).
        """
        client, js = await self._client()
        if not client.is_connected:
            raise ConnectionError("not connected")
        # Whatever this connection sent before has reached the server.
        await client.flush(timeout=max(1, round(self.ack_timeout)))
        tail = await read_tail(js, self.settings.name, self._accept)
        if tail is None:
            if self._check is not None:
                self._check.missing(self.tail_offset)
            await ensure_stream(js, self.settings)
            tail = StreamTail(0)
        elif not self._stream_checked:
            await ensure_stream(js, self.settings)
        self._stream_checked = True
        if self._check is not None:
            self._check.check(tail, self.tail_offset)
        self.reset(tail)

    def reset(self, tail: StreamTail) -> None:
        """Go on from ``tail``: drop what the stream holds, resend the rest under a new
        guard (late acknowledgements of earlier sends are ignored from now on)."""
        with self._cond:
            self.reconciliations += 1
            self._by_token.clear()
            pending = self._pending
            if tail.offset is not None:
                while pending and pending[0].offset <= tail.offset:
                    pending.popleft()
                if self.tail_offset is None or tail.offset > self.tail_offset:
                    self.tail_offset = tail.offset
                if self.oversized is not None and tail.offset >= self._oversized_at:
                    self.oversized = None  # the stream holds it now (stored by another way)
            for entry in pending:
                entry.sent_at = 0.0
            self._unsent = deque(pending)
            self._broken = False
            self._pumping = True
            self._cond.notify_all()
        self._expect_seq = tail.last_seq
        self._prev_msg_id = None

    async def _send(self) -> None:
        client = self._thread.client
        while True:
            with self._cond:
                if self._broken or client is None:
                    return
                unsent = self._unsent
                batch = [unsent.popleft() for _ in range(min(_SEND_SLICE, len(unsent)))]
                if not batch:
                    self._pumping = False
                    return
                now = time.monotonic()
                tokens = self._by_token
                for entry in batch:
                    entry.sent_at = now
            for entry in batch:
                headers = dict(entry.headers)
                if self._prev_msg_id is None:
                    headers[EXPECTED_LAST_SEQUENCE] = str(self._expect_seq)
                else:
                    headers[EXPECTED_LAST_MSG_ID] = self._prev_msg_id
                limit = client.max_payload
                if over_max_payload(entry.body, headers, limit):
                    self._stop_at(entry, *_max_payload_failure(entry, limit))
                    return
                self._prev_msg_id = entry.msg_id
                token = str(next(self._tokens))
                tokens[token] = entry
                try:
                    await client.publish(
                        entry.subject,
                        entry.body,
                        reply=f"{self._inbox}.{token}",
                        headers=headers,
                    )
                except nats.errors.MaxPayloadError:  # the server's limit changed under us
                    self._stop_at(entry, *_max_payload_failure(entry, limit))
                    return
                except Exception as exc:  # buffer full while disconnected, closed...
                    self._break(f"publishing offset {entry.offset} failed ({exc!r})")
                    return
            await asyncio.sleep(0)  # let acknowledgements in between slices

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox) + 1 :]
        with self._cond:
            entry = self._by_token.pop(token, None)
        if entry is None:  # an answer to a send before the last reconciliation
            return
        problem = _refusal(msg)
        if problem is not None and _error_code(msg) == _JS_MESSAGE_TOO_LARGE:
            self._stop_at(
                entry,
                f"the stream {self.settings.name} refuses it ({problem}), its payload "
                f"holding {len(entry.body)} bytes",
                "raise the stream's max_msg_size, or remove it (the relay makes its streams "
                "without one)",
            )
            return
        if problem is not None:
            self._break(f"offset {entry.offset} was refused ({problem})")
            return
        self._acknowledged(entry)

    def _stop_at(self, entry: Entry, why: str, remedy: str) -> None:
        """Stop at ``entry``, which NATS refuses for its size (``why``; ``remedy``: what the
        operator can do): its failure stands, said once; the pump tries again later."""
        failure = (
            f"the record at offset {entry.offset} cannot be published: {why}, and the records "
            f"after it wait: {remedy}"
        )
        with self._cond:
            if self.oversized != failure:
                logger.error("NATS relay to %s: %s", self.settings.name, failure)
            self.oversized = self.failure = failure
            self._oversized_at = entry.offset
            self._broken = True  # resent from the stream's end, under a new guard
        self._stalled = True
        self._kick()

    def _acknowledged(self, entry: Entry) -> None:
        with self._cond:
            self.published += 1
            pending = self._pending
            if self.tail_offset is None or entry.offset > self.tail_offset:
                self.tail_offset = entry.offset
            tail = self.tail_offset
            if self.oversized is not None and tail >= self._oversized_at:
                logger.warning("NATS relay to %s: offset %d published", self.settings.name, tail)
                self.oversized = self.failure = None
            # A stored message means its predecessors are stored (the guard): everything up
            # to it is durable, even an entry whose own acknowledgement was lost.
            while pending and pending[0].offset <= tail:
                pending.popleft()
            self._cond.notify_all()

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(_WATCH_EVERY)
            with self._cond:
                late = (
                    not self._broken
                    and bool(self._pending)
                    and self._pending[0].sent_at > 0
                    and time.monotonic() - self._pending[0].sent_at > self.ack_timeout
                )
                offset = self._pending[0].offset if self._pending else -1
            if late:
                self._break(f"no acknowledgement of offset {offset} within {self.ack_timeout} s")


def _max_payload_failure(entry: Entry, limit: int) -> tuple[str, str]:
    """Why the server refuses ``entry``'s message, and the remedy. The payload's size, not
    the message's: the guard header differs between tries, and the failure must not."""
    return (
        f"its payload of {len(entry.body)} bytes, with its headers, is more than the NATS "
        f"server's max_payload of {limit} bytes",
        "raise max_payload on the server (at most 64 MiB, which every record chanlog accepts "
        "fits) and restart it",
    )


_JS_MESSAGE_TOO_LARGE = 10054  # JetStream: "message size exceeds maximum allowed"


def _error_code(msg: Msg) -> int | None:
    """The JetStream error code of a refused publish's acknowledgement (``None``: none)."""
    try:
        error = orjson.loads(msg.data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    code = error.get("err_code") if isinstance(error, dict) else None
    return code if isinstance(code, int) else None


def _refusal(msg: Msg) -> str | None:
    """Why a publish was refused (``None``: stored, or a duplicate of a stored one)."""
    headers = msg.headers
    if headers and headers.get("Status") == "503":
        return "no stream answers for its subject"
    try:
        answer = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return f"an unreadable acknowledgement {msg.data[:100]!r}"
    if not isinstance(answer, dict):
        return f"an unexpected acknowledgement {msg.data[:100]!r}"
    error = answer.get("error")
    if error is not None:
        return str(error.get("description", error)) if isinstance(error, dict) else str(error)
    return None
