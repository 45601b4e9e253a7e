"""The numbers of DESIGN section 9, each checked against a run's results."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from benchmarks.harness import CaseResult, Stats

__all__ = ["TARGETS", "Target", "Verdict", "evaluate"]

Results = Mapping[str, CaseResult]


@dataclass(frozen=True)
class Verdict:
    """A target's outcome: what was measured, and met (``None``: not measured)."""

    measured: str
    met: bool | None


@dataclass(frozen=True)
class Target:
    """One number of DESIGN section 9 and how a run's results decide it."""

    target_id: str
    group: str
    text: str
    check: Callable[[Results], Verdict]


def _chanlog(results: Results, case_id: str) -> Stats | None:
    result = results.get(case_id)
    return None if result is None or result.skipped else result.chanlog


def _ratio(results: Results, case_id: str, peer: str) -> Stats | None:
    result = results.get(case_id)
    return None if result is None or result.skipped else result.ratios.get(peer)


def _missing(*case_ids: str) -> Verdict:
    return Verdict("not measured (" + ", ".join(case_ids) + ")", None)


def _at_most_ms(case_id: str, limit_ms: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _chanlog(results, case_id)
        if stats is None:
            return _missing(case_id)
        value = stats.median * 1e3
        return Verdict(f"{value:.3f} ms", value <= limit_ms)

    return check


def _at_most_mb(case_id: str, limit_mb: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _chanlog(results, case_id)
        if stats is None:
            return _missing(case_id)
        value = stats.median / 1e6
        return Verdict(f"{value:.2f} MB", value <= limit_mb)

    return check


def _speedup(case_id: str, peer: str, at_least: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _ratio(results, case_id, peer)
        if stats is None:
            return _missing(case_id)
        return Verdict(f"x{stats.median:.2f} the events/s of {peer}", stats.median >= at_least)

    return check


def _within_of_raw(case_id: str, factor: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _ratio(results, case_id, "raw sqlite3")
        if stats is None:
            return _missing(case_id)
        slowdown = 1.0 / stats.median
        return Verdict(f"{slowdown:.2f}x the time of raw sqlite3", slowdown <= factor)

    return check


def _within_of_peer(case_id: str, peer: str, factor: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _ratio(results, case_id, peer)
        if stats is None:
            return _missing(case_id)
        slowdown = 1.0 / stats.median
        return Verdict(f"{slowdown:.2f}x the time of {peer}", slowdown <= factor)

    return check


def _events_per_second(case_id: str, at_least: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        stats = _chanlog(results, case_id)
        if stats is None:
            return _missing(case_id)
        rate = 1.0 / stats.median
        return Verdict(f"{rate:,.0f} events/s", rate >= at_least)

    return check


def _worst_ms(case_ids: tuple[str, ...], limit_ms: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        found = {case_id: _chanlog(results, case_id) for case_id in case_ids}
        measured = {case_id: stats for case_id, stats in found.items() if stats is not None}
        if not measured:
            return _missing(*case_ids)
        worst_id, worst = max(measured.items(), key=lambda item: item[1].median)
        value = worst.median * 1e3
        return Verdict(f"{value:.3f} ms (worst: {worst_id})", value <= limit_ms)

    return check


def _flat(small_id: str, large_id: str, tolerance: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        small, large = _chanlog(results, small_id), _chanlog(results, large_id)
        if small is None or large is None:
            return _missing(small_id, large_id)
        ratio = large.median / small.median
        return Verdict(f"1M / 10k = {ratio:.2f}", ratio <= 1.0 + tolerance)

    return check


def _snapshot_share(limit: float) -> Callable[[Results], Verdict]:
    def check(results: Results) -> Verdict:
        file = _chanlog(results, "generate.file")
        snapshots = _chanlog(results, "generate.snapshots")
        if file is None or snapshots is None:
            return _missing("generate.file", "generate.snapshots")
        share = snapshots.median / file.median
        return Verdict(f"{100 * share:.1f}% of the file", share <= limit)

    return check


TARGETS: tuple[Target, ...] = (
    Target(
        "floor.append",
        "seed floor",
        "append < 1 ms per event (in memory, validated, notified)",
        _at_most_ms("append.memory.single", 1.0),
    ),
    Target(
        "floor.reconstruct",
        "seed floor",
        "reconstruct 1,000 events < 100 ms (cold, no snapshot)",
        _at_most_ms("reconstruct.1k.cold", 100.0),
    ),
    Target(
        "floor.memory",
        "seed floor",
        "10,000 events held in memory < 50 MB",
        _at_most_mb("memory.10k", 50.0),
    ),
    Target(
        "append.memory.single",
        "target",
        "in-memory append, one per call: >= 3x eventsourcing's events/s",
        _speedup("append.memory.single", "eventsourcing", 3.0),
    ),
    Target(
        "append.memory.batch",
        "target",
        "in-memory append, batches of 1,000: >= 3x eventsourcing's events/s",
        _speedup("append.memory.batch", "eventsourcing", 3.0),
    ),
    Target(
        "append.sqlite.single",
        "target",
        "durable sqlite append (fsync per commit) within 1.3x of raw sqlite3",
        _within_of_raw("append.sqlite.single", 1.3),
    ),
    Target(
        "append.sqlite.single.peer",
        "target",
        "durable single append (fsync per commit): ahead of eventsourcing's events/s",
        _speedup("append.sqlite.single", "eventsourcing", 1.0),
    ),
    Target(
        "append.sqlite.threads",
        "target",
        "durable append from 8 threads, one event per call: >= 5x eventsourcing's events/s",
        _speedup("append.sqlite.threads", "eventsourcing", 5.0),
    ),
    Target(
        "append.sqlite.batch",
        "target",
        "batched durable append >= 50,000 events/s",
        _events_per_second("append.sqlite.batch", 50_000),
    ),
    Target(
        "reconstruct.cold",
        "target",
        "reconstruct one entity of 1,000 events, cold, no snapshot: <= 5 ms",
        _at_most_ms("reconstruct.1k.cold", 5.0),
    ),
    Target(
        "reconstruct.snapshot",
        "target",
        "reconstruct with snapshots, any offset: <= 1 ms",
        _worst_ms(
            (
                "reconstruct.1k.snapshot",
                "reconstruct.1k.random-offset",
                "reconstruct.10k.snapshot",
                "reconstruct.10k.random-offset",
            ),
            1.0,
        ),
    ),
    Target(
        "scaling",
        "target",
        "one entity in a 1,000,000-event log costs no more than in a 10,000-event log (±50%)",
        _flat("scaling.10k", "scaling.1m", 0.5),
    ),
    Target(
        "memory.10k",
        "target",
        "10,000 events held <= 5 MB",
        _at_most_mb("memory.10k", 5.0),
    ),
    Target(
        "log.first-line",
        "target",
        "chanlog log prints its first record within 0.5 s on a 300,000-event sqlite log",
        _at_most_ms("log.first-line.300k", 500.0),
    ),
    Target(
        "reopen.1m",
        "target",
        "a 1,000,000-event sqlite log reopens, ready, in <= 2 s",
        _at_most_ms("log.reopen.1m", 2_000.0),
    ),
    Target(
        "generate.snapshots",
        "target",
        "generate --channels 1000 --turns 100 (default config): snapshots <= 10% of the file",
        _snapshot_share(0.10),
    ),
    Target(
        "generate.file",
        "target",
        "generate --channels 1000 --turns 100 (default config): the file under 300 MB",
        _at_most_mb("generate.file", 300.0),
    ),
    Target(
        "nats.relay",
        "target",
        "the NATS relay publishes within 2x of a raw nats-py publish loop with the same window",
        _within_of_peer("nats.relay", "raw nats-py", 2.0),
    ),
    Target(
        "nats.e2e.p50",
        "target",
        "append to a subscriber in another process through NATS at 1,000 events/s: p50 <= 5 ms",
        _at_most_ms("nats.e2e.p50", 5.0),
    ),
    Target(
        "nats.e2e.p99",
        "target",
        "append to a subscriber in another process through NATS at 1,000 events/s: p99 <= 25 ms",
        _at_most_ms("nats.e2e.p99", 25.0),
    ),
    Target(
        "bus.memory",
        "target",
        "a durable consumer handles >= 100,000 records/s (memory, positions stored)",
        _events_per_second("bus.memory", 100_000),
    ),
    Target(
        "bus.sqlite",
        "target",
        "a durable consumer handles >= 50,000 records/s on sqlite, positions stored",
        _events_per_second("bus.sqlite", 50_000),
    ),
)


def evaluate(results: Results) -> list[tuple[Target, Verdict]]:
    """Every target with its verdict on ``results``."""
    return [(target, target.check(results)) for target in TARGETS]
