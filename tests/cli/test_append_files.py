"""``chanlog append event.json``, as the operating guide shows it: an argument that is not
JSON text is a file of envelopes (issue 18 item 5). Through the console script."""

from __future__ import annotations

from pathlib import Path

import orjson

from chanlog.cli.errors import ExitCode
from cli.conftest import envelope, jsonl
from cli.test_console_script import assert_user_error, chanlog


def offsets(result_stdout: str) -> list[int]:
    offsets_: list[int] = orjson.loads(result_stdout)["offsets"]
    return offsets_


def test_append_reads_an_event_document_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_bytes(orjson.dumps(envelope(0), option=orjson.OPT_INDENT_2))
    result = chanlog("--db", "node.db", "append", "--json", "event.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert offsets(result.stdout) == [0]


def test_files_arrays_jsonl_and_text_form_one_batch(tmp_path: Path) -> None:
    (tmp_path / "pair.json").write_bytes(orjson.dumps([envelope(1), envelope(2)]))
    (tmp_path / "more.jsonl").write_text(jsonl(range(3, 6)))
    text = orjson.dumps(envelope(0)).decode()
    result = chanlog(
        "--db", "node.db", "append", "--json", text, "pair.json", "more.jsonl", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert offsets(result.stdout) == [0, 1, 2, 3, 4, 5]


def test_a_missing_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    text = orjson.dumps(envelope(0)).decode()
    result = chanlog("--db", "node.db", "append", text, "evnet.json", cwd=tmp_path)
    assert_user_error(result, ExitCode.USAGE, "argument 2", "cannot read evnet.json")
    assert not (tmp_path / "node.db").exists()


def test_a_malformed_file_is_named_with_where_it_breaks(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text('{\n  "type": "objective-created",\n  "payload": \n')
    result = chanlog("--db", "node.db", "append", "event.json", cwd=tmp_path)
    assert_user_error(result, ExitCode.INVALID_INPUT, "event.json: malformed JSON", "line 4")
    lines = jsonl(range(3)).splitlines(keepends=True)
    lines[1] = '{"type": "channel-created"\n'
    (tmp_path / "events.jsonl").write_text("".join(lines))
    result = chanlog("--db", "node.db", "append", "events.jsonl", cwd=tmp_path)
    assert_user_error(result, ExitCode.INVALID_INPUT, "events.jsonl:2: malformed JSON")
    assert not (tmp_path / "node.db").exists()


def test_a_refused_event_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(jsonl([0, 12]))
    result = chanlog("--db", "node.db", "append", "events.jsonl", cwd=tmp_path)
    assert_user_error(result, ExitCode.INVALID_INPUT, "events.jsonl:2", "nothing of this batch")
