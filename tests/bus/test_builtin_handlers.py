"""The audit tap and the channel read model."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import chanlog
from bus.conftest import fill
from chanlog.bus.jsonl_tap import JsonlTap
from chanlog.bus.read_model import ChannelReadModel
from chanlog.copying import export_line
from chanlog.errors import ConfigError, DecodeError, IntegrityError
from chanlog.events import StateSupportedUpdated
from chanlog.plugins.host import default_host


def test_the_tap_writes_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with chanlog.EventStore() as store:
        fill(store)
        tap = default_host().handlers["jsonl"](path=str(path))
        with store.bus.consumer("audit", tap) as runner:
            runner.drain()
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert [line["offset"] for line in lines] == list(range(len(store)))
        for line, record in zip(lines, store, strict=True):
            assert line["event_id"] == record.event_id
            assert line["type"] == record.event_type
            assert orjson.dumps(line["payload"], option=orjson.OPT_SORT_KEYS) == (
                record.event.canonical_json()
            )


def test_the_tap_resumes_after_its_last_line_and_cuts_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with chanlog.EventStore() as store:
        fill(store)
        tap = JsonlTap(path=path)
        with store.bus.consumer("audit", tap, commit_every=10**6, commit_interval=3600) as runner:
            runner.run_once(limit=10)
            # A crash: the position commit is lost, and the last write was cut short.
            store.backend.release_lease("audit", runner.holder)  # type: ignore[attr-defined]
            runner._started = False  # as if the process died here
        with path.open("ab") as file:
            file.write(b'{"offset": 10, "ev')
        again = JsonlTap(path=path)
        assert again.position("audit") == 10
        with store.bus.consumer("audit", again) as runner:
            runner.drain()
        offsets = [orjson.loads(line)["offset"] for line in path.read_bytes().splitlines()]
        assert offsets == list(range(len(store)))


def test_the_tap_refuses_bad_options_and_a_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no option 'colour'"):
        JsonlTap(path=tmp_path / "a", colour="red")
    with pytest.raises(ConfigError, match="fsync"):
        JsonlTap(path=tmp_path / "a", fsync="yes")  # type: ignore[arg-type]
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"hello": 1}\n')
    with pytest.raises(DecodeError, match="not a file of this tap"):
        JsonlTap(path=foreign)


@pytest.mark.parametrize("kind", ["the log itself", "text", "torn lines only"])
def test_the_tap_leaves_a_foreign_file_as_it_was(tmp_path: Path, kind: str) -> None:
    """An audit ``path`` that names another file (the log's own, copied from [backend]) is
    refused before a byte of it is cut: ending without a newline does not make it a torn
    line of this tap."""
    foreign = tmp_path / "foreign"
    if kind == "the log itself":
        foreign = tmp_path / "node.db"
        with chanlog.open({"backend": {"name": "sqlite", "path": str(foreign)}}) as store:
            fill(store)
    else:
        foreign.write_bytes(b"alpha\nbeta" if kind == "text" else b"no line ends here")
    before = foreign.read_bytes()
    assert not before.endswith(b"\n")
    with pytest.raises(DecodeError, match="not a file of this tap"):
        JsonlTap(path=foreign)
    assert foreign.read_bytes() == before


@pytest.mark.parametrize("whose", ["another log's tap", "the same log's export"])
def test_a_tap_goes_on_only_from_a_file_that_continues_its_log(tmp_path: Path, whose: str) -> None:
    """A file whose last line is not this log's record at its offset (another node's tap,
    or this log's after it lost records others replaced) is refused before a byte is
    written; a file whose last line is (this log's own export) is continued."""
    path = tmp_path / "audit.jsonl"
    with chanlog.EventStore() as store:
        fill(store, seed=1 if whose == "the same log's export" else 2)
        written = JsonlTap(path=path)
        with store.bus.consumer("audit", written) as runner:
            runner.run_once(limit=5)
    before = path.read_bytes()
    with chanlog.EventStore() as store:
        fill(store, seed=1)
        tap = JsonlTap(path=path)
        runner = store.bus.consumer("audit", tap)
        if whose == "the same log's export":
            with runner:
                runner.drain()
            offsets = [orjson.loads(line)["offset"] for line in path.read_bytes().splitlines()]
            assert offsets == list(range(len(store)))
            return
        with pytest.raises(IntegrityError, match="offset 4") as refused:
            runner.drain()
        runner.close()
    assert refused.value.offset == 4
    assert str(path) in str(refused.value) and "reset audit" in str(refused.value)
    assert path.read_bytes() == before


def test_an_export_of_the_log_is_continued_as_the_taps_own_file(tmp_path: Path) -> None:
    """An export's lines hold the tap's fields (in another order): the tap checks the last
    one against the log and goes on after it."""
    export = tmp_path / "export.jsonl"
    with chanlog.EventStore() as store:
        fill(store)
        lines = [orjson.dumps(export_line(record)) + b"\n" for record in store.read_range(0, 5)]
        export.write_bytes(b"".join(lines))
        with store.bus.consumer("audit", JsonlTap(path=export)) as runner:
            runner.drain()
        offsets = [orjson.loads(line)["offset"] for line in export.read_bytes().splitlines()]
        assert offsets == list(range(len(store)))


def test_a_tap_whose_first_write_was_torn_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"offset":0,"event_id":"0x12')
    assert JsonlTap(path=path).position("audit") is None
    assert path.read_bytes() == b""


def test_the_read_model_holds_the_latest_supported_state_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "model.db"
    with chanlog.EventStore() as store:
        fill(store, channels=4, turns=8)
        model = ChannelReadModel(path=path)
        with store.bus.consumer("model", model, subjects="chanlog.channel.>") as runner:
            runner.drain()
            # Handed again (a lost position commit): nothing changes.
            for record in store.read_range(0, len(store)):
                model(record)
        updates: dict[str, int] = {}
        latest: dict[str, int] = {}
        for record in store:
            if isinstance(record.event, StateSupportedUpdated):
                channel = record.event.channel_id.lower()
                updates[channel] = updates.get(channel, 0) + 1
                latest[channel] = record.event.supported_turn
        reopened = ChannelReadModel(path=path)  # the runner closed the one it ran
        rows = reopened.all()
        assert {row.channel_id: row.updates for row in rows} == updates
        assert {row.channel_id: row.supported_turn for row in rows} == latest
        assert reopened.position("model") == len(store)
        assert reopened.latest(rows[0].channel_id.upper()) == rows[0]
        assert reopened.latest("0x" + "00" * 32) is None
        reopened.close()
    with pytest.raises(ConfigError, match="no option"):
        ChannelReadModel(path=path, table="x")
