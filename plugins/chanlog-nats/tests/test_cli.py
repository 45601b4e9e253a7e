"""The plugin through the command line: ``chanlog run`` with a ``nats-relay`` consumer on the
node, ``chanlog ingest nats --stream S --durable NAME`` on the replica, both stopped by
SIGTERM (exit 0), and the replica's head equal to the node's. Both processes are stopped
when the test ends, also when it fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing import sample_events

if TYPE_CHECKING:
    from conftest import Children

pytestmark = pytest.mark.nats

COUNT = 300
CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")


def _chanlog(children: Children, *arguments: str, cwd: Path) -> subprocess.Popen[str]:
    assert CHANLOG is not None, "the chanlog console script is not installed"
    return children.start(
        [CHANLOG, *arguments],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, out + err


def test_chanlog_run_relays_and_chanlog_ingest_replicates(
    tmp_path: Path,
    nats_url: str,
    streams: Any,
    children: Children,
    wait_until: Callable[..., None],
) -> None:
    stream = streams.name()
    node_dir, replica_dir = tmp_path / "node", tmp_path / "replica"
    node_dir.mkdir()
    replica_dir.mkdir()
    with EventStore(SqliteBackend(node_dir / "node.db"), projections=[]) as node:
        node.append_batch(sample_events(COUNT))
        head = node.backend.head()
    (node_dir / "chanlog.toml").write_text(
        'projections = []\n[backend]\nname = "sqlite"\npath = "node.db"\n'
        f'[bus]\nprefix = "{streams.prefix(stream)}"\n'  # subjects of the stream's own
        '[consumers.to-nats]\nhandler = "nats-relay"\n'
        f'stream = "{stream}"\nurl = "{nats_url}"\nstorage = "memory"\n'
    )
    (replica_dir / "chanlog.toml").write_text(
        'projections = []\n[backend]\nname = "sqlite"\npath = "replica.db"\n'
        '[snapshots]\npolicy = "never"\n'
    )
    relay = _chanlog(children, "run", "--refresh", "0.2", cwd=node_dir)
    wait_until(
        lambda: (info := streams.info(stream)) is not None and info.state.messages == COUNT,
        60,
        "the relay to publish the log",
    )
    code, output = _stop(relay)
    assert code == 0, output
    assert streams.info(stream).config.subjects == [f"{streams.prefix(stream)}.>"]
    ingest = _chanlog(
        children, "ingest", "nats", "--stream", stream, "--durable", "replica", "--url", nats_url,
        cwd=replica_dir,
    )  # fmt: skip

    def replicated() -> bool:
        with EventStore(
            SqliteBackend(replica_dir / "replica.db", read_only=True), projections=[]
        ) as replica:
            return len(replica) == COUNT

    wait_until(lambda: (replica_dir / "replica.db").exists() and replicated(), 60, "the ingest")
    code, output = _stop(ingest)
    assert code == 0, output
    assert f"appended {COUNT}" in output
    with EventStore(SqliteBackend(replica_dir / "replica.db"), projections=[]) as replica:
        assert replica.backend.head() == head
