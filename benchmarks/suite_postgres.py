"""The postgres plugin (``chanlog_postgres``): append one per commit and in batches, and
reconstruct one entity. Skipped, with the reason, when the plugin or the server is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks import adapters
from benchmarks.config import Config
from benchmarks.harness import Case, CaseResult, Contender, skipped_case
from benchmarks.logs import TARGET, LogCache, fill
from benchmarks.suite_append import BATCH, chanlog_append
from chanlog.backends.base import Backend

__all__ = ["cases"]


def _reconstruct(
    make_backend: Callable[[bool], Backend], events: int, ops: int
) -> Callable[[], float]:
    built: dict[str, int] = {}

    def trial() -> float:
        with adapters.open_store(make_backend(not built), snapshots=False) as store:
            if not built:
                fill(store, events, events)
                built["length"] = len(store)
            length = built["length"]
            started = time.perf_counter()
            for _ in range(ops):
                adapters.reconstruct(store, TARGET, length, snapshots=False)
            return time.perf_counter() - started

    return trial


def cases(config: Config, logs: LogCache) -> list[Case | CaseResult]:
    """Postgres rows, or skipped rows saying why."""
    single = config.size(500, 50)
    batched = config.size(20_000, 2_000)
    entity = config.size(1_000, 200)
    reps = config.reps(5)
    try:
        adapters.postgres_backend("chanlog_bench_probe").close()
    except adapters.Unavailable as exc:
        reason = f"postgres plugin unavailable: {exc}"
        return [
            skipped_case(
                "postgres.append.single", "postgres append, one per commit", "throughput", reason
            ),
            skipped_case(
                "postgres.append.batch", "postgres append, batches of 1,000", "throughput", reason
            ),
            skipped_case(
                "postgres.reconstruct.1k", "postgres reconstruct 1,000 events", "latency", reason
            ),
        ]
    return [
        Case(
            "postgres.append.single",
            "postgres append, one event per commit (validated, notified)",
            "throughput",
            single,
            [
                Contender(
                    "chanlog",
                    chanlog_append(
                        lambda: adapters.postgres_backend("chanlog_bench_single"), single, None
                    ),
                )
            ],
            reps,
            f"chanlog_postgres.PostgresBackend on {adapters.POSTGRES_DSN}, "
            "a fresh schema per repetition.",
        ),
        Case(
            "postgres.append.batch",
            f"postgres append, batches of {BATCH:,} (validated, notified)",
            "throughput",
            batched,
            [
                Contender(
                    "chanlog",
                    chanlog_append(
                        lambda: adapters.postgres_backend("chanlog_bench_batch"), batched, BATCH
                    ),
                )
            ],
            reps,
        ),
        Case(
            "postgres.reconstruct.1k",
            f"postgres reconstruct one entity of {entity:,} events, cold, no snapshot",
            "latency",
            10,
            [
                Contender(
                    "chanlog",
                    _reconstruct(
                        lambda fresh: adapters.postgres_backend(
                            "chanlog_bench_entity", fresh=fresh
                        ),
                        entity,
                        10,
                    ),
                )
            ],
            reps,
        ),
    ]
