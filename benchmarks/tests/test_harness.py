"""The harness computes what the report claims: interleaving, per-op values, per-pair ratios,
skips, target verdicts, and a page that lists every figure. No timing is asserted."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import workload
from benchmarks.config import Config
from benchmarks.harness import Case, CaseResult, Contender, Stats, run_case, skipped_case
from benchmarks.report import render_markdown
from benchmarks.targets import TARGETS, evaluate


def _quiet(_line: str) -> None:
    """Swallow progress lines."""


def test_stats_summarise_median_min_max() -> None:
    stats = Stats.of([3.0, 1.0, 2.0, 10.0])
    assert (stats.median, stats.minimum, stats.maximum) == (2.5, 1.0, 10.0)
    assert stats.samples == (3.0, 1.0, 2.0, 10.0)
    with pytest.raises(ValueError, match="no samples"):
        Stats.of([])


def test_run_case_interleaves_and_divides_by_ops() -> None:
    order: list[str] = []
    chanlog_totals = iter([10.0, 20.0, 30.0])
    peer_totals = iter([40.0, 20.0, 90.0])

    def chanlog() -> float:
        order.append("A")
        return next(chanlog_totals)

    def peer() -> float:
        order.append("B")
        return next(peer_totals)

    result = run_case(
        Case(
            "x",
            "x",
            "latency",
            10,
            [Contender("chanlog", chanlog), Contender("peer", peer)],
            3,
        ),
        log=_quiet,
    )
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert result.contenders["chanlog"].samples == (1.0, 2.0, 3.0)
    # Ratios pair repetition i of the peer with repetition i of chanlog: 4, 1, 3.
    assert result.ratios["peer"].samples == (4.0, 1.0, 3.0)
    assert result.ratios["peer"].median == 3.0
    assert result.skipped is None


def test_a_failing_contender_skips_the_case_with_the_reason() -> None:
    def broken() -> float:
        raise RuntimeError("no such backend")

    result = run_case(
        Case("y", "y", "throughput", 1, [Contender("chanlog", broken)], 2), log=_quiet
    )
    assert result.skipped == "chanlog failed: RuntimeError: no such backend"
    assert result.contenders == {}


def test_chanlog_must_come_first_and_sizes_be_positive() -> None:
    with pytest.raises(ValueError, match="chanlog must be the first"):
        run_case(Case("z", "z", "latency", 1, [Contender("peer", lambda: 1.0)]), log=_quiet)
    with pytest.raises(ValueError, match="ops and repetitions"):
        run_case(Case("z", "z", "latency", 0, [Contender("chanlog", lambda: 1.0)]), log=_quiet)


def _result(case_id: str, chanlog: float, **peers: float) -> CaseResult:
    result = CaseResult(case_id, case_id, "latency", 1, 1, "")
    result.contenders["chanlog"] = Stats.of([chanlog])
    for name, value in peers.items():
        result.contenders[name.replace("_", " ")] = Stats.of([value])
        result.ratios[name.replace("_", " ")] = Stats.of([value / chanlog])
    return result


def test_targets_are_met_not_met_or_not_measured() -> None:
    results = {
        "append.memory.single": _result("append.memory.single", 1e-5, eventsourcing=4e-5),
        "append.sqlite.single": _result("append.sqlite.single", 1.4e-3, raw_sqlite3=1e-3),
        "reconstruct.1k.cold": _result("reconstruct.1k.cold", 0.004),
        "scaling.10k": _result("scaling.10k", 0.004),
        "scaling.1m": _result("scaling.1m", 0.0061),
        "memory.10k": _result("memory.10k", 6e6),
    }
    verdicts = {target.target_id: verdict for target, verdict in evaluate(results)}
    assert verdicts["append.memory.single"].met is True  # x4.00
    assert verdicts["append.sqlite.single"].met is False  # 1.40x the raw time
    assert verdicts["reconstruct.cold"].met is True
    assert verdicts["scaling"].met is False  # 1.52 > 1.5
    assert verdicts["memory.10k"].met is False
    assert verdicts["floor.memory"].met is True
    assert verdicts["reopen.1m"].met is None
    assert "not measured" in verdicts["reopen.1m"].measured
    assert len(verdicts) == len(TARGETS)


def test_skipped_results_do_not_count_as_measured() -> None:
    skipped = skipped_case("memory.10k", "m", "memory", "plugin missing")
    verdicts = {target.target_id: verdict for target, verdict in evaluate({"memory.10k": skipped})}
    assert verdicts["memory.10k"].met is None


def test_page_lists_every_figure_and_target() -> None:
    results = [
        _result("append.memory.single", 1e-5, eventsourcing=3e-5),
        skipped_case("postgres.append.single", "postgres append", "throughput", "no server"),
    ]
    meta = {
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "memory_gb": 4,
            "os": "Linux",
            "python": "CPython 3.11",
            "versions": {"chanlog": "0.1.0"},
        },
        "duration_s": 300.0,
        "started": "2026-11-24T00:00:00+00:00",
        "mode": "full",
        "json_link": "results.json",
    }
    page = render_markdown(meta, results, "img/scaling.png")
    assert "| append.memory.single | chanlog | 100,000 ev/s" not in page  # kind is latency
    assert "| append.memory.single | chanlog | 0.010 ms |" in page
    assert "|  | eventsourcing | 0.030 ms | 0.030 ms - 0.030 ms | **x3.00** (3.00 - 3.00) |" in page
    assert "skipped | no server" in page
    assert "![scaling curve](img/scaling.png)" in page
    for target in TARGETS:
        assert target.text in page


def test_log_events_spread_the_target_over_the_whole_log() -> None:
    target = workload.channel_id(99)
    events = list(workload.log_events(10_000, target, 100, channel_size=1_000))
    assert len(events) == 10_000
    positions = [i for i, event in enumerate(events) if event.streams[0] == target.lower()]
    assert len(positions) == 100
    assert positions[0] == 0
    assert positions[-1] >= 9_800  # reaches the end, not bunched at the start
    per_channel = Counter(event.streams[0] for event in events)
    assert max(count for stream, count in per_channel.items() if stream != target) == 1_000
    assert len({event.event_id for event in events}) == 10_000
    with pytest.raises(ValueError, match="target_events"):
        next(workload.log_events(10, target, 11))


def test_config_selects_cases_and_clears_old_files(tmp_path: Path) -> None:
    config = Config(quick=True, workdir=tmp_path, only=("append.*",))
    assert config.wants("append.memory.single")
    assert not config.wants("memory.10k")
    assert Config(quick=False, workdir=tmp_path).wants("anything")
    assert (config.size(100, 5), config.reps(7)) == (5, 2)
    for suffix in ("", "-wal"):
        (tmp_path / f"a.db{suffix}").write_bytes(b"old")
    assert not config.path("a.db").exists()
    assert not (tmp_path / "a.db-wal").exists()
    assert list(itertools.islice(tmp_path.iterdir(), 1)) == []


def test_a_path_given_again_holds_a_new_log(tmp_path: Path) -> None:
    """Every trial of a durable case appends to a new log at the same path: the side files
    of the last one (chanlog's head witness among them) go with it, or the store refuses
    to create a log among them (ADR 0051) and the case is skipped."""
    from benchmarks import adapters, workload
    from chanlog import EventStore

    config = Config(quick=True, workdir=tmp_path)
    for _ in range(2):
        store = EventStore(adapters.sqlite_backend(config.path("a.db"), "full"))
        try:
            store.append(workload.channel_created(workload.channel_id(1)))
            assert len(store) == 1
        finally:
            store.close()


def test_a_partial_run_leaves_the_committed_table_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.__main__ as command

    monkeypatch.setattr(command, "ROOT", tmp_path)
    # The machine description and the plot need the bench extra (psutil, matplotlib).
    machine = {"cpu": "test", "cores": 2, "memory_gb": 1.0, "os": "os", "python": "py"}
    monkeypatch.setattr(command, "machine_info", lambda: {**machine, "versions": {}})
    monkeypatch.setattr(command, "plot_scaling", lambda path, results: False)
    command.write_outputs(Config(quick=False, workdir=tmp_path, only=("append.*",)), [], "t", 1.0)
    partial = tmp_path / "benchmarks" / "results" / "partial"
    assert (partial / "results.json").exists()
    assert "--only 'append.*'" in (partial / "results.json").read_text()
    assert not (tmp_path / "docs" / "benchmarks.md").exists()
    assert not (tmp_path / "benchmarks" / "results" / "results.json").exists()
