"""``python -m benchmarks``: run the suite, rewrite the table, the JSON and the plot."""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import (
    suite_append,
    suite_bus,
    suite_cli,
    suite_generate,
    suite_log,
    suite_memory,
    suite_nats,
    suite_postgres,
    suite_reconstruct,
    suite_threads,
)
from benchmarks.config import Config
from benchmarks.harness import Case, CaseResult, run_case
from benchmarks.logs import LogCache
from benchmarks.report import machine_info, plot_scaling, render_markdown, write_json
from benchmarks.targets import evaluate

ROOT = Path(__file__).resolve().parent.parent
SUITES = (
    suite_append,
    suite_threads,
    suite_reconstruct,
    suite_log,
    suite_cli,
    suite_memory,
    suite_postgres,
    suite_generate,
    suite_nats,
    suite_bus,
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="chanlog benchmarks side by side with eventsourcing and raw sqlite3.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, 2 repetitions; writes under benchmarks/results/quick/ only",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only case ids matching this shell pattern (repeatable), e.g. 'append.*'; "
        "writes under benchmarks/results/partial/ only",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="directory for sqlite files (default: a temporary directory under the repo, "
        "on the same disk as the project, removed afterwards)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases and write the outputs; the exit status is 0."""
    args = parse(argv)
    started_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    started = time.perf_counter()
    own_workdir = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=".bench-", dir=ROOT / "benchmarks"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = Config(quick=args.quick, workdir=workdir, only=tuple(args.only))
    results: list[CaseResult] = []
    logs = LogCache(config)
    try:
        for suite in SUITES:
            name = suite.__name__.rsplit(".", 1)[-1]
            print(f"[{time.perf_counter() - started:6.1f} s] {name}", flush=True)
            for item in suite.cases(config, logs):
                if not config.wants(item.case_id):
                    continue
                if isinstance(item, Case):
                    results.append(run_case(item))
                else:
                    print(f"  {item.case_id}: SKIPPED ({item.skipped})")
                    results.append(item)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    duration = time.perf_counter() - started
    write_outputs(config, results, started_at.isoformat(), duration)
    for target, verdict in evaluate({result.case_id: result for result in results}):
        state = {True: "met", False: "NOT MET", None: "not measured"}[verdict.met]
        print(f"  {state:>12}  {target.text}: {verdict.measured}")
    print(f"done in {duration:.0f} s")
    return 0


def write_outputs(config: Config, results: list[CaseResult], started: str, duration: float) -> None:
    """The JSON, the plot and the markdown page. Only a full run of every case rewrites the
    committed table: quick runs go to ``benchmarks/results/quick/`` and runs of some cases
    (``--only``) to ``benchmarks/results/partial/``, both ignored by git."""
    if config.quick or config.only:
        out = ROOT / "benchmarks" / "results" / ("quick" if config.quick else "partial")
        json_path, plot_path, page_path = (
            out / "results.json",
            out / "scaling.png",
            out / "benchmarks.md",
        )
        plot_link = "scaling.png"
    else:
        json_path = ROOT / "benchmarks" / "results" / "results.json"
        plot_path = ROOT / "docs" / "img" / "scaling.png"
        page_path = ROOT / "docs" / "benchmarks.md"
        plot_link = "img/scaling.png"
    meta = {
        "started": started,
        "duration_s": round(duration, 1),
        "mode": "quick" if config.quick else "partial" if config.only else "full",
        "command": "python -m benchmarks"
        + (" --quick" if config.quick else "")
        + "".join(f" --only '{pattern}'" for pattern in config.only),
        "machine": machine_info(),
    }
    write_json(json_path, meta, results)
    plotted = plot_scaling(plot_path, results)
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(render_markdown(meta, results, plot_link if plotted else None))
    print(f"wrote {json_path}, {page_path}" + (f", {plot_path}" if plotted else ""))


if __name__ == "__main__":
    sys.exit(main())
