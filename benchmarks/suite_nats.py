"""The NATS plugin (``chanlog_nats``, DESIGN section 9 and 10): the relay against a raw
nats-py publish loop with the same in-flight window, in the same run; and append to a
subscriber in another process through the ``nats`` broker at 1,000 events/s (p50, p99).
Skipped, with the reason, when the plugin or the server is missing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.config import Config
from benchmarks.harness import Case, CaseResult, Contender, skipped_case
from benchmarks.logs import LogCache
from chanlog import EventStore
from chanlog.testing import sample_events

__all__ = ["cases"]

NATS_URL = os.environ.get("CHANLOG_TEST_NATS_URL", "nats://127.0.0.1:4222")
WINDOW = 256
"""Publishes in flight, for the relay and the raw loop alike."""
RATE = 1_000
"""Events per second appended in the end-to-end case."""
ROOT = Path(__file__).resolve().parent.parent


def _probe() -> str | None:
    """Why the NATS rows cannot run (``None``: they can)."""
    try:
        import chanlog_nats  # noqa: F401
        import nats
    except ImportError as exc:
        return f"chanlog_nats is not importable ({exc})"

    async def check() -> None:
        client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()

    try:
        asyncio.run(check())
    except Exception as exc:
        return f"NATS with JetStream at {NATS_URL} is not reachable ({exc!r})"
    return None


async def _drop(stream: str) -> None:
    import nats

    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def relay_trial(store: EventStore) -> Callable[[], float]:
    """Relay the whole log to a fresh stream; time from the first record handed over to
    the last acknowledgement (connecting and creating the stream are setup)."""
    from chanlog_nats import NatsRelay

    def trial() -> float:
        stream = f"BENCH_RELAY_{uuid.uuid4().hex[:8].upper()}"
        relay = NatsRelay(stream=stream, url=NATS_URL, storage="memory", window=WINDOW)
        runner = store.bus.consumer(stream.lower(), relay, batch_size=1_000)
        try:
            runner.start()
            started = time.perf_counter()
            runner.drain()
            if not relay.settle(120):
                raise RuntimeError("the relay did not settle")
            elapsed = time.perf_counter() - started
        finally:
            runner.close()
            asyncio.run(_drop(stream))
        return elapsed

    return trial


def raw_trial(store: EventStore) -> Callable[[], float]:
    """The same records (subject, body, headers made beforehand) published with nats-py's
    ``publish_async`` and at most :data:`WINDOW` in flight."""
    from chanlog_nats import headers_of

    messages = [
        (store.bus.subject_of(record), record.event.canonical_json(), headers_of(record))
        for record in store.read_range(0, len(store))
    ]

    async def publish(stream: str) -> float:
        import nats

        client = await nats.connect(NATS_URL)
        js = client.jetstream(publish_async_max_pending=WINDOW)
        try:
            await js.add_stream(name=stream, subjects=["chanlog.>"], storage="memory")
            started = time.perf_counter()
            for subject, body, headers in messages:
                await js.publish_async(subject, body, headers=dict(headers))
            await js.publish_async_completed()
            elapsed = time.perf_counter() - started
            await js.delete_stream(stream)
            return elapsed
        finally:
            await client.close()

    def trial() -> float:
        return asyncio.run(publish(f"BENCH_RAW_{uuid.uuid4().hex[:8].upper()}"))

    return trial


def end_to_end_trial(count: int, percentile: float) -> Callable[[], float]:
    """Append ``count`` events at :data:`RATE` per second to a store with the ``nats``
    broker; a subscriber in another process notes when each arrives; return the latency
    at ``percentile`` (0.5, 0.99) in seconds."""

    def trial() -> float:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.nats_subscriber", NATS_URL, prefix, str(count)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the subscriber process did not start")
        events = sample_events(count, salt=prefix)
        sent: list[float] = []
        with EventStore(
            projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": NATS_URL}
        ) as store:
            start = time.perf_counter()
            for number, event in enumerate(events):
                due = start + number / RATE
                while (now := time.perf_counter()) < due:
                    if due - now > 0.0005:
                        time.sleep(due - now - 0.0003)
                sent.append(time.time())
                store.append(event)
            out, _ = child.communicate(timeout=120)
        arrived = {int(o): float(t) for o, t in (line.split() for line in out.splitlines())}
        if len(arrived) != count:
            raise RuntimeError(f"the subscriber got {len(arrived)} of {count} records")
        latencies = sorted(arrived[offset] - at for offset, at in enumerate(sent))
        return latencies[min(count - 1, int(percentile * count))]

    return trial


def cases(config: Config, logs: LogCache) -> list[Case | CaseResult]:
    """NATS rows, or skipped rows saying why."""
    del logs
    relayed = config.size(20_000, 2_000)
    streamed = config.size(5_000, 500)
    reps = config.reps(5)
    titles = {
        "nats.relay": f"NATS relay of a {relayed:,}-event log, {WINDOW} in flight",
        "nats.e2e.p50": f"append -> subscriber in another process via NATS, p50 at {RATE:,}/s",
        "nats.e2e.p99": f"append -> subscriber in another process via NATS, p99 at {RATE:,}/s",
    }
    reason = _probe() if any(config.wants(case_id) for case_id in titles) else "not selected"
    if reason is not None:
        return [
            skipped_case(
                case_id, title, "throughput" if case_id == "nats.relay" else "latency", reason
            )
            for case_id, title in titles.items()
        ]
    store = EventStore(projections=[])
    store.append_batch(sample_events(relayed))
    e2e_note = (
        f"{streamed:,} events appended one per call at {RATE:,}/s to an in-memory store with "
        "the nats broker; the subscriber is an empty store with the nats broker in another "
        "process (wall clocks of one machine); the figure is the percentile of that run."
    )
    return [
        Case(
            "nats.relay",
            titles["nats.relay"],
            "throughput",
            relayed,
            [Contender("chanlog", relay_trial(store)), Contender("raw nats-py", raw_trial(store))],
            reps,
            f"nats-relay driven by a durable consumer of an in-memory log (read, publish "
            f"pipelined, position after the PubAcks) against nats-py publish_async with at most "
            f"{WINDOW} in flight, the same subjects, bodies and headers prepared beforehand; "
            f"a fresh memory-storage stream each repetition, on {NATS_URL}.",
        ),
        Case(
            "nats.e2e.p50",
            titles["nats.e2e.p50"],
            "latency",
            1,
            [Contender("chanlog", end_to_end_trial(streamed, 0.50))],
            reps,
            e2e_note,
        ),
        Case(
            "nats.e2e.p99",
            titles["nats.e2e.p99"],
            "latency",
            1,
            [Contender("chanlog", end_to_end_trial(streamed, 0.99))],
            reps,
            e2e_note,
        ),
    ]
