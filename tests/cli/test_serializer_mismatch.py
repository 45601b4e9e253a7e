"""Opening a json-written log with ``serializer = "msgpack"`` is a configuration error that
names both serializers (exit 2), not an integrity failure at offset 0 (issue 18 item 2).
Through the console script."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanlog.cli.errors import ExitCode
from cli.test_console_script import assert_user_error, chanlog

pytest.importorskip("chanlog_msgpack")


def config(directory: Path, serializer: str) -> str:
    path = directory / f"{serializer}.toml"
    path.write_text(f'serializer = "{serializer}"\n[backend]\nname = "sqlite"\npath = "node.db"\n')
    return str(path)


@pytest.mark.parametrize("command", [["verify"], ["stats"], ["log"], ["generate"]])
def test_a_log_opened_with_another_serializer_names_both(
    tmp_path: Path, command: list[str]
) -> None:
    written = chanlog(
        "--config", config(tmp_path, "json"), "generate", "--channels", "1", cwd=tmp_path
    )
    assert written.returncode == 0, written.stderr
    before = (tmp_path / "node.db").read_bytes()
    result = chanlog("--config", config(tmp_path, "msgpack"), *command, cwd=tmp_path)
    assert_user_error(
        result,
        ExitCode.USAGE,
        "configuration error: ",
        "written with serializer 'json'",
        "configured with serializer 'msgpack'",
    )
    assert "integrity" not in result.stderr
    assert (tmp_path / "node.db").read_bytes() == before
    assert chanlog("--config", config(tmp_path, "json"), "verify", cwd=tmp_path).returncode == 0
