"""Events out and back in through the CLI: any valid events survive ``export`` and
``import`` (as an exact copy and as plain envelopes) from one serializer to another, and
``log``, ``stats`` and ``verify`` read them; a damaged export is imported whole, or refused
naming its line with nothing of the refused batch written. In-process through click's
runner, on SQLite files."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog.cli import cli
from chanlog.cli.errors import ExitCode
from chanlog.config import open_store
from chanlog.events.base import Event
from chanlog_strategies import any_event
from cli.conftest import jsonl

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
serializers = st.sampled_from(["json", "msgpack"])


def chanlog(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["-c", str(config), *args], prog_name="chanlog")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exc_info,
    )
    return result


def log_config(folder: Path, name: str, serializer: str) -> Path:
    """A configuration of a SQLite log without projections (it holds any valid events,
    whatever their order) or snapshots."""
    config = folder / f"{name}.toml"
    config.write_text(
        f'serializer = "{serializer}"\nprojections = []\n[backend]\nname = "sqlite"\n'
        f'path = "{name}.db"\n[snapshots]\npolicy = "never"\n'
    )
    return config


def chain_head(config: Path) -> str:
    result = chanlog(config, "verify", "--json")
    assert result.exit_code == 0, result.output
    head: str = orjson.loads(result.stdout)["head"]
    return head


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(events=st.lists(any_event, min_size=1, max_size=6), out=serializers, back=serializers)
def test_any_valid_events_go_out_and_back(events: list[Event], out: str, back: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        original = log_config(folder, "original", out)
        with open_store(original) as store:
            store.append_batch(events)
        for command in (["log"], ["log", "--json"], ["stats"]):
            result = chanlog(original, *command)
            assert result.exit_code == 0, (command, result.output)
        exported = folder / "export.jsonl"
        assert chanlog(original, "export", str(exported)).exit_code == 0
        copy = log_config(folder, "copy", back)
        imported = chanlog(copy, "import", str(exported))
        assert imported.exit_code == 0, imported.output
        assert chain_head(copy) == chain_head(original)
        lines = [orjson.loads(line) for line in exported.read_bytes().splitlines()]
        envelopes = folder / "envelopes.jsonl"
        envelopes.write_bytes(
            b"".join(
                orjson.dumps({"type": line["type"], "payload": line["payload"]}) + b"\n"
                for line in lines
            )
        )
        appended = log_config(folder, "appended", back)
        result = chanlog(appended, "import", str(envelopes))
        assert result.exit_code == 0, result.output
        assert chain_head(appended) == chain_head(original)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The demo log's export (13 lines)."""
    folder = tmp_path_factory.mktemp("fuzz-transfer")
    db = str(folder / "demo.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db, "import", "-"], input=jsonl(range(13))).exit_code == 0
    result = runner.invoke(cli, ["--db", db, "export"])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


@st.composite
def damaged(draw: st.DrawFn, export: bytes) -> bytes:
    """``export`` cut, with a byte changed or inserted, or with a line dropped, repeated,
    moved or given another value in one of its fields."""
    lines = export.splitlines(keepends=True)
    how = draw(st.sampled_from(["cut", "byte", "insert", "drop", "repeat", "move", "field"]))
    if how in ("cut", "byte", "insert"):
        at = draw(st.integers(0, len(export) - 1))
        if how == "cut":
            return export[:at]
        if how == "byte":
            return export[:at] + bytes([draw(st.integers(0, 255))]) + export[at + 1 :]
        return export[:at] + draw(st.binary(min_size=1, max_size=3)) + export[at:]
    index = draw(st.integers(0, len(lines) - 1))
    line = lines.pop(index)
    if how == "repeat":
        lines[index:index] = [line, line]
    elif how == "move":
        lines.insert(draw(st.integers(0, len(lines))), line)
    elif how == "field":
        value = orjson.loads(line)
        field = draw(st.sampled_from(sorted(value)))
        value[field] = draw(
            st.none()
            | st.booleans()
            | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=False)
            | st.text(max_size=4)
            | st.builds(list)
            | st.builds(dict)
        )
        lines.insert(index, orjson.dumps(value) + b"\n")
    return b"".join(lines)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[*SLOW, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), batch_size=st.integers(1, 14))
def test_a_damaged_export_is_copied_whole_or_refused_at_its_line(
    export: bytes, data: st.DataObject, batch_size: int
) -> None:
    text = data.draw(damaged(export))
    originals = [orjson.loads(line) for line in export.splitlines()]
    with tempfile.TemporaryDirectory() as name:
        source = Path(name) / "export.jsonl"
        source.write_bytes(text)
        config = log_config(Path(name), "copy", "json")
        result = chanlog(config, "import", "--batch-size", str(batch_size), str(source))
        assert result.exit_code in (0, ExitCode.INVALID_INPUT), result.output
        if result.exit_code:
            assert re.fullmatch(rf"chanlog: .*{re.escape(str(source))}:\d+: .*\n", result.stderr)
        if not (Path(name) / "copy.db").exists():
            return
        chain_head(config)  # verify passes
        copied = [
            orjson.loads(line) for line in chanlog(config, "export").stdout_bytes.splitlines()
        ]
        # Whatever was written is a beginning of the original: the copy of an export is exact
        # (an envelope file is appended as new events, here the same events in their order).
        assert copied == originals[: len(copied)]
