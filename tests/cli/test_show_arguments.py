"""``chanlog show`` refuses what the library refuses, with the library's message (issue 18
item 7): an unknown kind, a malformed id, ``--at`` beyond the end. Through the console
script."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chanlog import EventStore, InvalidArgument
from chanlog.cli.demo_events import CHANNEL_ID, demo_events
from chanlog.cli.errors import ExitCode
from cli.conftest import jsonl
from cli.test_console_script import assert_user_error, chanlog


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A directory whose node.db holds the 13 demo events."""
    imported = chanlog("--db", "node.db", "import", "-", input=jsonl(range(13)), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    return tmp_path


def library_refusal(*arguments: object) -> str:
    with EventStore() as store:
        store.append_batch(demo_events())
        with pytest.raises(InvalidArgument) as error:
            store.reconstruct(*arguments)  # type: ignore[arg-type]
    return str(error.value)


@pytest.mark.parametrize(
    "arguments",
    [
        ("channels", CHANNEL_ID),
        ("channel", "0x1234"),
        ("message", "not-an-id"),
        ("channel", CHANNEL_ID, "--at", "100"),
    ],
    ids=["unknown kind", "malformed channel id", "malformed message id", "at beyond the end"],
)
def test_show_refuses_as_the_library_does(demo_dir: Path, arguments: tuple[str, ...]) -> None:
    result = chanlog("--db", "node.db", "show", *arguments, cwd=demo_dir)
    kind, entity_id, *rest = arguments
    at = int(rest[1]) if rest else None
    expected = library_refusal(kind, entity_id, at)
    assert_user_error(result, ExitCode.USAGE, expected)
    assert result.stderr.count(expected) == 1  # said once


def test_not_a_channel_id_is_not_not_found(demo_dir: Path) -> None:
    result = chanlog("--db", "node.db", "show", "channel", "0x1234", cwd=demo_dir)
    assert_user_error(result, ExitCode.USAGE, "'0x1234' is not a channel id", "64 hex digits")
    absent = chanlog("--db", "node.db", "show", "channel", "0x" + "12" * 32, cwd=demo_dir)
    assert_user_error(absent, ExitCode.NOT_FOUND, "no channel 0x1212")


def test_message_and_messages_both_show_a_message(tmp_path: Path) -> None:
    message = "0x" + "ee" * 32
    sent = {
        "type": "message-received",
        "payload": {
            "message_id": message,
            "peer_id": "peer",
            "objective_id": "0x" + "aa" * 32,
            "timestamp_ms": 1,
        },
    }
    appended = chanlog("--db", "node.db", "append", orjson.dumps(sent).decode(), cwd=tmp_path)
    assert appended.returncode == 0, appended.stderr
    states = [
        orjson.loads(
            chanlog("--db", "node.db", "show", kind, message, "--json", cwd=tmp_path).stdout
        )["state"]
        for kind in ("message", "messages")
    ]
    assert states[0] == states[1] and states[0]["received"] is True


@pytest.mark.parametrize("at", [None, 6])
def test_show_prints_the_librarys_state_data(demo_dir: Path, at: int | None) -> None:
    # store.reconstructor.state_data is the public face of what `show --json` prints.
    extra = () if at is None else ("--at", str(at))
    shown = chanlog(
        "--db", "node.db", "show", "channel", CHANNEL_ID, "--json", *extra, cwd=demo_dir
    )
    assert shown.returncode == 0, shown.stderr
    with EventStore() as store:
        store.append_batch(demo_events())
        data = store.reconstructor.state_data("channel", CHANNEL_ID, at)
    assert orjson.loads(shown.stdout)["state"] == orjson.loads(orjson.dumps(data))
