"""A mirror ingest into a store that snapshots on its own: the store appended a
``snapshot-created`` of its own after the node's records (every 1,000 by default, for a
configured store without ``[snapshots]``), which took the offset the node's next record
needs, and from then on every message was parked or waited for (ADR 0078). The ingest
now refuses such a store when it starts, before it connects or writes, saying what to set.
No NATS server is needed: the refusal comes first."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from chanlog_nats import NatsIngest

import chanlog
from chanlog.errors import ConfigError

UNREACHABLE = "nats://127.0.0.1:9"


def _ingest(**options: object) -> NatsIngest:
    return NatsIngest(
        name="from-node-a", stream="NODE_A", durable="replica-1", url=UNREACHABLE, **options
    )


def _stopped() -> threading.Event:
    """A stop already asked for: an ingest that goes past its checks returns at once
    (rather than try to reach a server that is not there until stopped)."""
    stop = threading.Event()
    stop.set()
    return stop


@pytest.mark.parametrize("snapshots", [None, {"policy": "every-n-events", "n": 10}])
def test_a_mirror_refuses_a_store_that_snapshots_on_its_own(
    tmp_path: Path, snapshots: dict[str, object] | None
) -> None:
    config: dict[str, object] = {"backend": {"name": "sqlite", "path": str(tmp_path / "r.db")}}
    if snapshots is not None:
        config["snapshots"] = snapshots
    with chanlog.open(config) as replica:
        with pytest.raises(ConfigError) as refused:
            _ingest().run(replica, _stopped())
        assert len(replica) == 0
        assert replica.bus.consumers.states() == []  # not even its consumer was made
    assert str(refused.value) == (
        "nats ingest from-node-a: a mirror appends only the node's records, and this store "
        "takes snapshots of its own (snapshot policy 'every-n-events'), whose records would "
        "take the offsets of the node's: set [snapshots] policy = \"never\" in the replica's "
        "configuration (or mirror = false to append the stream's events as new ones)"
    )
    assert refused.value.key == "snapshots.policy"


def test_a_store_that_never_snapshots_or_an_ingest_that_is_no_mirror_goes_on(
    tmp_path: Path,
) -> None:
    """Past the check, the ingest would connect: asked to stop already, it returns."""
    stop = _stopped()
    never = {"backend": "memory", "snapshots": {"policy": "never"}}
    with chanlog.open(never) as replica:
        _ingest().run(replica, stop)
    with chanlog.open({"backend": "memory"}) as appending:
        _ingest(mirror=False).run(appending, stop)


def test_chanlog_ingest_into_a_store_that_snapshots_logs_its_refusal_as_run_does(
    tmp_path: Path,
) -> None:
    """``chanlog ingest`` left its warnings to Python's last-resort handler: the worker's
    line came without the ``chanlog:`` prefix that ``run`` gives it."""
    import os
    import subprocess
    import sys

    chanlog_script = Path(sys.executable).with_name("chanlog")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    ingest = ["ingest", "nats", "--stream", "NODE_A", "--durable", "r", "--url", UNREACHABLE]
    result = subprocess.run(
        [chanlog_script, "--db", str(tmp_path / "replica.db"), *ingest],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    worker_lines = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert worker_lines, result.stderr
    for line in worker_lines:
        assert line.startswith("chanlog: chanlog.worker: ingest nats failed: ConfigError: ")
