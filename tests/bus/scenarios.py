"""The end-to-end scenarios of issue 15's "done when" list, each run against a ``[backend]``
table: the SQLite tests in ``tests/bus`` and the PostgreSQL plugin's tests call the same
functions (see :mod:`bus.processes` for the machinery)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
import orjson

import chanlog
from bus.processes import (
    Backend,
    ProbeLine,
    Worker,
    cli,
    environment,
    expected_read_model,
    handled_by_pid,
    matching,
    open_store,
    plugin_site,
    probe_lines,
    read_model,
    states,
    tap_offsets,
    wait_for,
    workers,
    write_config,
)
from chanlog.codec import to_payload
from chanlog.events.base import Event
from chanlog.workload import Workload, WorkloadConfig


def workload(seed: int, channels: int, turns: int) -> list[Event]:
    """A realistic workload's events, in a valid order."""
    return list(Workload(WorkloadConfig(seed=seed, channels=channels, turns=turns)).events())


class Appender:
    """Appends ``events`` from a thread of the test's process (another process than the
    worker's), a few at a time, until stopped or out of events."""

    def __init__(self, store: chanlog.EventStore, events: Sequence[Event], seed: int) -> None:
        self._store = store
        self._events = events
        self.next = 0
        self._chooser = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def append(self, count: int) -> None:
        """Append the next ``count`` events at once."""
        chunk = self._events[self.next : self.next + count]
        if chunk:
            self._store.append_batch(list(chunk))
        self.next += len(chunk)

    def _run(self, pause: float) -> None:
        while not self._stop.wait(pause) and self.next < len(self._events):
            self.append(self._chooser.randint(1, 6))

    @contextmanager
    def running(self, pause: float = 0.05) -> Iterator[None]:
        """Append in the background while the block runs."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(pause,), daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(timeout=60)


# -- SIGKILL at random moments ----------------------------------------------------------------

PROBE_SUBJECTS = "chanlog.channel.>"
MODEL_SUBJECTS = "chanlog.channel.state-supported-updated.>"
TAP_SUBJECTS = "chanlog.objective.>"
KILL_CONSUMERS = {
    # At least once, in order: every handling is a line in probe.log.
    "probe": {
        "handler": "probe",
        "subjects": [PROBE_SUBJECTS],
        "path": "probe.log",
        "pause_ms": 2,  # some work per record, so that kills land in the middle of a burst
        "commit_every": 50,
        "commit_interval_ms": 100,
        "lease_ttl": 2,
    },
    # Exactly once: the read model tracks its own offset (TracksPosition).
    "model": {
        "handler": "channel-read-model",
        "subjects": [MODEL_SUBJECTS],
        "path": "model.db",
        "commit_every": 20,
        "lease_ttl": 2,
    },
    # Exactly once too: the tap resumes after its file's last line.
    "tap": {
        "handler": "jsonl",
        "subjects": [TAP_SUBJECTS],
        "path": "tap.jsonl",
        "commit_every": 20,
        "lease_ttl": 2,
    },
}


@attrs.define
class KillReport:
    """What the kill scenario saw (for the test to assert on and to print)."""

    kills: int = 0
    redelivered: int = 0
    rounds_with_redelivery: int = 0
    handled: int = 0
    log_length: int = 0


def check_probe(
    store: chanlog.EventStore,
    lines: Sequence[ProbeLine],
    position: int,
    previous_position: int,
    run_pid: int | None,
) -> int:
    """The at-least-once checks of the probe consumer; returns how many records this run
    handled that an earlier run had handled already."""
    want = matching(store, PROBE_SUBJECTS)
    runs = handled_by_pid(lines)
    seen = {line.offset for line in lines if line.kind == "E"}
    assert seen <= set(want), "the probe was handed a record its subjects do not match"
    # Never skips: every matching record before the committed position was handled...
    missing = [offset for offset in want if offset < position and offset not in seen]
    assert not missing, f"position {position} passed unhandled records {missing[:5]}"
    # ...and there is no hole before the furthest record handled.
    furthest = max(seen, default=-1)
    holes = [offset for offset in want if offset <= furthest and offset not in seen]
    assert not holes, f"records {holes[:5]} were skipped"
    mine = runs.get(run_pid, []) if run_pid is not None else []
    # In order: one run hands records in strictly increasing offsets (no failures here),
    # starting exactly where the previous run committed.
    assert mine == sorted(set(mine)), f"run {run_pid} went back: {mine[:20]}"
    if mine:
        resume = next(offset for offset in want if offset >= previous_position)
        assert mine[0] == resume, (mine[0], resume, previous_position)
    earlier = {line.offset for line in lines if line.kind == "E" and line.pid != run_pid}
    return len(set(mine) & earlier)


def check_exactly_once(store: chanlog.EventStore, workdir: Path, positions: dict[str, int]) -> None:
    """The read model holds every applied record's effect once, and every record before
    its consumer's position is applied; the tap holds every matching record once, in order."""
    model = read_model(workdir / "model.db", "model")
    tracked = model.tracked or 0
    assert model.rows == expected_read_model(store, tracked)
    before = [offset for offset in matching(store, MODEL_SUBJECTS) if offset < positions["model"]]
    assert not before or tracked > before[-1], (tracked, before[-1])
    tap = tap_offsets(workdir / "tap.jsonl")
    want = matching(store, TAP_SUBJECTS)
    assert tap == want[: len(tap)], "the tap skipped or repeated a record"
    assert len(tap) >= len([offset for offset in want if offset < positions["tap"]])


def sigkill_at_random_moments(backend: Backend, workdir: Path, kills: int, seed: int) -> KillReport:
    """``chanlog run`` with the three consumers of :data:`KILL_CONSUMERS`, killed with
    SIGKILL ``kills`` times at random moments while another thread appends; after every
    kill the consumers' positions and effects are checked; finally a run to the end of the
    log, stopped with SIGTERM, must leave every matching record handled."""
    chooser = random.Random(seed)
    write_config(workdir, backend, KILL_CONSUMERS)
    env = environment(plugin_site(workdir))
    report = KillReport()
    events = workload(seed, channels=100, turns=25)
    probe_log = workdir / "probe.log"
    with open_store(backend) as store, workers() as started:
        appender = Appender(store, events, seed)
        appender.append(800)
        previous = 0
        for _ in range(kills):
            # A burst to work through (the probe is caught up between rounds: a worker
            # commits its position whenever it reaches the end of the log).
            appender.append(200)
            before = probe_log.stat().st_size if probe_log.exists() else 0
            worker = Worker(workdir, env)
            started.append(worker)
            with appender.running():

                def grown(size: int = before) -> bool:
                    return probe_log.exists() and probe_log.stat().st_size > size

                wait_for(grown, 60, worker.output, pause=0.01)
                time.sleep(chooser.uniform(0.0, 0.6))
                worker.kill()
            report.kills += 1
            positions = {name: state.position for name, state in states(store).items()}
            redelivered = check_probe(
                store, probe_lines(probe_log), positions["probe"], previous, worker.pid
            )
            check_exactly_once(store, workdir, positions)
            report.redelivered += redelivered
            report.rounds_with_redelivery += bool(redelivered)
            previous = positions["probe"]
        # The last run, undisturbed: every consumer reaches the end, then SIGTERM.
        final = Worker(workdir, env)
        started.append(final)
        head = len(store)
        wait_for(
            lambda: all(state.position == head for state in states(store).values()),
            180,
            "every consumer to reach the end of the log",
            pause=0.2,
        )
        assert final.terminate() == 0, final.output()
        lines = probe_lines(probe_log)
        check_probe(store, lines, head, previous, final.pid)
        positions = {name: state.position for name, state in states(store).items()}
        assert positions == dict.fromkeys(KILL_CONSUMERS, head)
        check_exactly_once(store, workdir, positions)
        handled = [line.offset for line in lines if line.kind == "E"]
        assert sorted(set(handled)) == matching(store, PROBE_SUBJECTS)
        assert tap_offsets(workdir / "tap.jsonl") == matching(store, TAP_SUBJECTS)
        model = read_model(workdir / "model.db", "model")
        assert model.rows == expected_read_model(store, head)
        assert not any(state.lease_holder for state in states(store).values())
        report.handled = len(handled)
        report.log_length = head
    return report


# -- parking, and replay through the CLI ----------------------------------------------------


def position(store: chanlog.EventStore, name: str) -> int | None:
    """The consumer's stored position (``None``: it does not exist yet)."""
    state = states(store).get(name)
    return None if state is None else state.position


def _parked(workdir: Path, env: dict[str, str], name: str) -> list[dict[str, object]]:
    result = cli("consumers", "parked", name, "--json", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    parked: list[dict[str, object]] = orjson.loads(result.stdout)
    return parked


def _run_until(
    workdir: Path,
    env: dict[str, str],
    store: chanlog.EventStore,
    started: list[Worker],
    done: Callable[[], object],
    what: str,
) -> Worker:
    """``chanlog run`` until ``done()``, then SIGTERM: it must exit 0."""
    worker = Worker(workdir, env)
    started.append(worker)
    wait_for(done, 120, lambda: f"{what} ({worker.output()})", pause=0.1)
    assert worker.terminate() == 0, worker.output()
    return worker


def park_then_replay(backend: Backend, workdir: Path) -> None:
    """A handler failing on one record parks it after ``max_deliver`` tries and goes on;
    ``chanlog consumers parked`` shows it with its error; ``replay`` hands it over again
    (failing again: it stays parked with more attempts; once fixed: it leaves the list)."""
    env = environment(plugin_site(workdir))
    table: dict[str, object] = {
        "handler": "probe",
        "path": "probe.log",
        "max_deliver": 3,
        "backoff": [0.05],
        "lease_ttl": 2,
    }
    with open_store(backend) as store, workers() as started:
        store.append_batch(workload(3, channels=4, turns=5))
        head = len(store)
        bad = head // 2
        write_config(workdir, backend, {"flaky": {**table, "fail_on": [bad]}})
        first = _run_until(
            workdir,
            env,
            store,
            started,
            lambda: position(store, "flaky") == head,
            "the consumer to reach the end",
        )
        lines = probe_lines(workdir / "probe.log")
        tries = [line for line in lines if line.offset == bad]
        assert [line.kind for line in tries] == ["B", "B", "B"]  # 3 tries, none finished
        assert {line.pid for line in tries} == {first.pid}
        # It went on: every other record was handled, in order.
        assert handled_by_pid(lines)[first.pid] == [o for o in range(head) if o != bad]
        [parked] = _parked(workdir, env, "flaky")
        assert (parked["offset"], parked["attempts"], parked["replay"]) == (bad, 3, False)
        assert f"RuntimeError: probe refuses offset {bad}" in str(parked["error"])
        table_view = cli("consumers", "parked", "flaky", cwd=workdir, env=env)
        assert str(bad) in table_view.stdout and "probe refuses" in table_view.stdout
        listed = orjson.loads(cli("consumers", "--json", cwd=workdir, env=env).stdout)
        assert [(c["name"], c["parked"], c["lag"]) for c in listed] == [("flaky", 1, 0)]
        assert "probe refuses" in listed[0]["last_error"]

        # Replayed while the cause is still there: tried again, parked again.
        replayed = cli("consumers", "replay", "flaky", cwd=workdir, env=env)
        assert replayed.returncode == 0, replayed.stderr
        assert "1 parked record(s) to replay" in replayed.stdout
        assert _parked(workdir, env, "flaky")[0]["replay"] is True
        _run_until(
            workdir,
            env,
            store,
            started,
            lambda: (p := store.bus.consumers.parked("flaky")) and not p[0].replay,
            "the replay to be tried",
        )
        [again] = _parked(workdir, env, "flaky")
        assert (again["offset"], again["attempts"]) == (bad, 6)

        # The cause fixed (the handler no longer fails on it): replay hands it over once.
        write_config(workdir, backend, {"flaky": table})
        assert cli("consumers", "replay", "flaky", "--offset", str(bad), cwd=workdir, env=env)
        fixed = _run_until(
            workdir,
            env,
            store,
            started,
            lambda: not store.bus.consumers.parked("flaky"),
            "the replayed record to leave the parked list",
        )
        assert handled_by_pid(probe_lines(workdir / "probe.log"))[fixed.pid] == [bad]
        assert _parked(workdir, env, "flaky") == []
        state = states(store)["flaky"]
        assert (state.position, state.handled, state.parked) == (head, head, 0)


# -- two workers on one consumer --------------------------------------------------------------


def _holder_pid(store: chanlog.EventStore, name: str) -> int | None:
    """The pid in the lease holder's identity (``host:pid:nonce:scope``), while a lease
    runs."""
    infos = {info.name: info for info in store.bus.consumers.infos()}
    info = infos.get(name)
    if info is None or not info.running or info.state.lease_holder is None:
        return None
    return int(info.state.lease_holder.split(":")[1])


@attrs.frozen
class Takeover:
    """How long the waiting worker took to run the consumer after the first was killed."""

    lease_ttl: float
    seconds: float
    first_record_after: float


def lease_takeover(backend: Backend, workdir: Path, lease_ttl: float = 1.5) -> Takeover:
    """Two ``chanlog run`` on one consumer: one runs, the other waits (however long) and
    takes over once the first is killed with SIGKILL (at its next look: the first's process
    is gone, ADR 0045; within ``lease_ttl`` for a holder on another machine); no moment sees
    both handling a record; no record is skipped across the takeover."""
    env = environment(plugin_site(workdir))
    write_config(
        workdir,
        backend,
        {
            "shared": {
                "handler": "probe",
                "path": "probe.log",
                "pause_ms": 2,
                "commit_every": 10,
                "lease_ttl": lease_ttl,
            }
        },
    )
    probe_log = workdir / "probe.log"
    with open_store(backend) as store, workers() as started:
        appender = Appender(store, workload(5, channels=20, turns=20), seed=5)
        appender.append(300)
        with appender.running(pause=0.05):
            first = Worker(workdir, env, tag="first")
            started.append(first)
            wait_for(lambda: _holder_pid(store, "shared") == first.pid, 60, first.output)
            second = Worker(workdir, env, tag="second")
            started.append(second)
            # The second waits while the first runs: several lease periods, with renewals.
            until = time.monotonic() + 3 * lease_ttl
            while time.monotonic() < until:
                assert _holder_pid(store, "shared") == first.pid
                assert second.process.poll() is None, second.output()
                time.sleep(0.1)
            assert {line.pid for line in probe_lines(probe_log)} == {first.pid}
            killed_at = time.monotonic()
            first.kill()
            dead_at = time.monotonic()
            wait_for(
                lambda: _holder_pid(store, "shared") == second.pid,
                lease_ttl + 30,
                second.output,
                pause=0.02,
            )
            took = time.monotonic() - killed_at
            wait_for(
                lambda: any(line.pid == second.pid for line in probe_lines(probe_log)),
                30,
                second.output,
            )
        head = len(store)
        wait_for(lambda: position(store, "shared") == head, 120, second.output)
        assert second.terminate() == 0, second.output()
        lines = probe_lines(probe_log)
        by_first = [line for line in lines if line.pid == first.pid]
        by_second = [line for line in lines if line.pid == second.pid]
        assert len(by_first) + len(by_second) == len(lines)
        # Never both at once: everything the first did (begun or finished) ended before it
        # died, and the second began nothing before that.
        assert max(line.time for line in by_first) < dead_at
        assert min(line.time for line in by_second) > killed_at
        # At least once across the takeover: every record handled, in order per worker.
        done = [line.offset for line in lines if line.kind == "E"]
        assert sorted(set(done)) == list(range(head))
        for pid in (first.pid, second.pid):
            mine = handled_by_pid(lines)[pid]
            assert mine == sorted(set(mine))
        first_by_second = min(line.time for line in by_second)
        return Takeover(lease_ttl, took, first_by_second - killed_at)


# -- a 100k-event log, three consumers, then live appends ------------------------------------


def _lags(workdir: Path, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """``chanlog consumers --json``, by name."""
    result = cli("consumers", "--json", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in orjson.loads(result.stdout)}


def _caught_up(workdir: Path, env: dict[str, str], head: int) -> bool:
    rows = _lags(workdir, env)
    return len(rows) == 3 and all(r["lag"] == 0 and r["head"] == head for r in rows.values())


def three_consumers_over_a_big_log(
    backend: Backend, workdir: Path, size: int, model_from_end: int = 2_000
) -> None:
    """``chanlog run`` with three consumers handles a ``size``-event log, follows appends
    that another process (``chanlog import``) makes, and stops cleanly on SIGTERM.

    The read model commits (and syncs) its own database for every record it applies, so it
    starts ``model_from_end`` records before the end (a ``start`` offset in the
    configuration); the two taps read the whole log.
    """
    env = environment()
    events = workload(11, channels=max(4, size // 85), turns=20)
    more = events[size : size + 2_000]
    assert len(more) == 2_000
    with open_store(backend) as store:
        for start in range(0, size, 5_000):
            store.append_batch(events[start : min(size, start + 5_000)])
        head = len(store)
        model_start = head - model_from_end
        write_config(
            workdir,
            backend,
            {
                "audit": {"handler": "jsonl", "path": "audit.jsonl"},
                "channels": {
                    "handler": "jsonl",
                    "subjects": ["chanlog.channel.>"],
                    "path": "channels.jsonl",
                    "commit_every": 1000,
                },
                "latest": {
                    "handler": "channel-read-model",
                    "subjects": [MODEL_SUBJECTS],
                    "path": "latest.db",
                    "start": model_start,
                },
            },
        )
        with workers() as started:
            worker = Worker(workdir, env)
            started.append(worker)
            wait_for(lambda: _caught_up(workdir, env, head), 600, worker.output, pause=1.0)
            source = workdir / "more.jsonl"
            source.write_bytes(
                b"".join(
                    orjson.dumps({"type": event.event_type, "payload": to_payload(event)}) + b"\n"
                    for event in more
                )
            )
            imported = cli("import", str(source), cwd=workdir, env=env, timeout=300)
            assert imported.returncode == 0, imported.stderr
            head = len(store)
            assert head >= size + len(more)  # the import's store may add a snapshot
            wait_for(lambda: _caught_up(workdir, env, head), 300, worker.output, pause=1.0)
            assert worker.process.poll() is None
            assert worker.terminate() == 0, worker.output()
        rows = _lags(workdir, env)
        for row in rows.values():
            assert (row["position"], row["lag"], row["running"]) == (head, 0, False)
            assert row["lease_holder"] is None and row["last_error"] is None
        assert not any(state.lease_holder for state in states(store).values())
        assert tap_offsets(workdir / "audit.jsonl") == list(range(head))
        channel = matching(store, "chanlog.channel.>")
        assert tap_offsets(workdir / "channels.jsonl") == channel
        model = read_model(workdir / "latest.db", "latest")
        assert model.rows == expected_read_model(store, head, start=model_start)
        assert rows["latest"]["handled"] == len(
            [o for o in matching(store, MODEL_SUBJECTS) if o >= model_start]
        )
