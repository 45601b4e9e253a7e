"""Interleaved measurement: repetitions of chanlog and its peers alternate (A B A B ...).

Every contender's trial does its own untimed setup and returns the seconds (or bytes) its
measured work took; the harness divides by the number of operations, so every stored value
is *per operation* and lower is better. Ratios are taken per repetition pair
(``peer / chanlog``), so a slow moment on this shared machine hits both sides of a pair
instead of skewing one contender's whole series.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Case",
    "CaseResult",
    "Contender",
    "Stats",
    "Timer",
    "run_case",
    "skipped_case",
]

Kind = Literal["throughput", "latency", "memory"]

#: A trial performs one repetition: it sets up (untimed) and returns the measured total.
Trial = Callable[[], float]


@dataclass(frozen=True)
class Stats:
    """Median, minimum and maximum of a series of per-operation values."""

    median: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise ``samples`` (at least one value)."""
        if not samples:
            raise ValueError("no samples to summarise")
        values = tuple(float(value) for value in samples)
        return cls(statistics.median(values), min(values), max(values), values)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "samples": list(self.samples),
        }


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a name (``chanlog``, ``eventsourcing``, ``raw sqlite3``)
    and the trial that measures it once."""

    name: str
    trial: Trial


@dataclass(frozen=True)
class Case:
    """A measured figure: chanlog (always the first contender) against zero or more peers.

    Attributes:
        case_id: a stable dotted id (``append.memory.single``), the key in the JSON.
        title: what the row of the table says.
        kind: ``throughput`` (values are seconds per event; shown as events/s),
            ``latency`` (seconds per operation; shown in ms) or ``memory`` (bytes per
            measurement; shown in MB).
        ops: operations per trial; each trial's total is divided by it.
        contenders: chanlog first, then the peers, run in this order every repetition.
        repetitions: how many times every contender runs.
        note: how the figure was obtained, shown under the table.
    """

    case_id: str
    title: str
    kind: Kind
    ops: int
    contenders: Sequence[Contender]
    repetitions: int = 5
    note: str = ""


@dataclass
class CaseResult:
    """What a :class:`Case` measured (or why it was skipped)."""

    case_id: str
    title: str
    kind: Kind
    ops: int
    repetitions: int
    note: str
    contenders: dict[str, Stats] = field(default_factory=dict)
    ratios: dict[str, Stats] = field(default_factory=dict)
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping; ``ratios`` are ``peer / chanlog`` per pair (> 1: chanlog
        does better)."""
        return {
            "id": self.case_id,
            "title": self.title,
            "kind": self.kind,
            "ops_per_trial": self.ops,
            "repetitions": self.repetitions,
            "note": self.note,
            "skipped": self.skipped,
            "contenders": {name: stats.to_json() for name, stats in self.contenders.items()},
            "ratios": {name: stats.to_json() for name, stats in self.ratios.items()},
        }

    @property
    def chanlog(self) -> Stats | None:
        """chanlog's figures, or ``None`` when the case was skipped."""
        return self.contenders.get("chanlog")


def run_case(case: Case, *, log: Callable[[str], None] = print) -> CaseResult:
    """Run ``case``: every repetition runs each contender once, in order (A B A B ...).

    A contender whose trial raises ends the case as skipped, with the error as the reason,
    so one broken peer or missing feature does not sink the whole suite.
    """
    if not case.contenders or case.contenders[0].name != "chanlog":
        raise ValueError(f"{case.case_id}: chanlog must be the first contender")
    if case.ops < 1 or case.repetitions < 1:
        raise ValueError(f"{case.case_id}: ops and repetitions must be >= 1")
    result = CaseResult(case.case_id, case.title, case.kind, case.ops, case.repetitions, case.note)
    series: dict[str, list[float]] = {contender.name: [] for contender in case.contenders}
    started = time.perf_counter()
    for _ in range(case.repetitions):
        for contender in case.contenders:
            gc.collect()
            try:
                total = contender.trial()
            except Exception as exc:  # a benchmark must report, not crash the suite
                result.skipped = f"{contender.name} failed: {type(exc).__name__}: {exc}"
                log(f"  {case.case_id}: SKIPPED ({result.skipped})")
                return result
            series[contender.name].append(total / case.ops)
    result.contenders = {name: Stats.of(values) for name, values in series.items()}
    base = series["chanlog"]
    for name, values in series.items():
        if name == "chanlog":
            continue
        pairs = [peer / mine for peer, mine in zip(values, base, strict=True) if mine > 0]
        if pairs:
            result.ratios[name] = Stats.of(pairs)
    log(f"  {case.case_id}: {summary(result)} ({time.perf_counter() - started:.1f} s)")
    return result


def skipped_case(case_id: str, title: str, kind: Kind, reason: str, note: str = "") -> CaseResult:
    """A row for a figure that could not be measured in this run, with the reason."""
    return CaseResult(case_id, title, kind, 0, 0, note, skipped=reason)


def summary(result: CaseResult) -> str:
    """One line: each contender's median in the case's display unit, and the ratios."""
    if result.skipped:
        return f"skipped: {result.skipped}"
    parts = [
        f"{name} {format_value(result.kind, stats.median)}"
        for name, stats in result.contenders.items()
    ]
    parts += [f"x{stats.median:.2f} vs {name}" for name, stats in result.ratios.items()]
    return ", ".join(parts)


def format_value(kind: Kind, value: float) -> str:
    """A per-operation value in the unit people read: events/s, ms or MB."""
    if kind == "throughput":
        return f"{1.0 / value:,.0f} ev/s" if value > 0 else "inf ev/s"
    if kind == "latency":
        return f"{value * 1e3:.3f} ms"
    return f"{value / 1e6:.2f} MB"


class Timer:
    """Accumulates the time spent inside :meth:`measure` blocks, so a trial can exclude
    its per-step setup (building events, say) from the measured total."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Add the time the block takes to :attr:`elapsed`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed += time.perf_counter() - started
