"""The audit tap knows a file of its own whatever the length of its lines: a record line
longer than the 64 KiB the tap reads first (a large event) is still its own on restart, a
torn one is still cut off, and a foreign file is still refused without a byte cut."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chanlog
from bus.conftest import fill
from chanlog.bus.jsonl_tap import JsonlTap
from chanlog.errors import DecodeError

WINDOW = 65536
"""How much of the file's end the tap reads first."""


def line(offset: int, size: int) -> bytes:
    """A record line of this tap, ``size`` bytes long with its newline (at least ~60)."""
    head = (
        orjson.dumps(
            {"offset": offset, "event_id": "0x" + "ab" * 32, "chain_hash": "0x" + "cd" * 32}
        )[:-1]
        + b',"type":"note","payload":{"text":"'
    )
    tail = b'"}}\n'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


sizes = st.one_of(
    st.integers(60, 200),
    st.integers(WINDOW - 64, WINDOW + 64),
    st.integers(2 * WINDOW - 64, 2 * WINDOW + 64),
    st.integers(200, 3 * WINDOW),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lengths=st.lists(sizes, min_size=1, max_size=4), torn=st.one_of(st.none(), sizes))
def test_a_file_of_its_own_is_known_whatever_its_line_lengths(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], torn: int | None
) -> None:
    path = tmp_path_factory.mktemp("tap") / "audit.jsonl"
    whole = b"".join(line(offset, size) for offset, size in enumerate(lengths))
    cut_short = b"" if torn is None else line(len(lengths), torn)[: max(1, torn // 2)]
    path.write_bytes(whole + cut_short)
    tap = JsonlTap(path=path)
    try:
        assert tap.position("audit") == len(lengths)
    finally:
        tap.close()
    assert path.read_bytes() == whole


def test_a_record_larger_than_the_window_is_resumed_after(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(line(0, 100) + line(1, 3 * WINDOW))
    assert JsonlTap(path=path).position("audit") == 2
    with path.open("ab") as file:  # a large write cut short
        file.write(line(2, 2 * WINDOW)[: WINDOW + 10])
    assert JsonlTap(path=path).position("audit") == 2
    assert path.read_bytes() == line(0, 100) + line(1, 3 * WINDOW)


def test_a_torn_first_write_larger_than_the_window_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(line(0, 2 * WINDOW)[: WINDOW + 10])
    assert JsonlTap(path=path).position("audit") is None
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"x" * (3 * WINDOW), id="one long line, no newline"),
        pytest.param(b'{"hello": 1}\n' + b"y" * (2 * WINDOW), id="a json line, then a long tail"),
        pytest.param(b"a\n" + b"z" * (2 * WINDOW) + b"\n" + b"torn", id="a long foreign line"),
        pytest.param(
            b"alpha\n" + line(0, 2 * WINDOW) + b"torn", id="a record line in a foreign file"
        ),
        pytest.param(line(0, 100) + b"{" * (2 * WINDOW) + b"\n", id="a long last line not json"),
        pytest.param(
            b'{"offset": "none", "note": "' + b"n" * (2 * WINDOW), id="no line, not a tap's head"
        ),
        pytest.param(b'{"offset":1' + b"2" * 300, id="no line, a head too long"),
    ],
)
def test_a_foreign_file_with_long_lines_is_refused_untouched(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "foreign"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match="not a file of this tap"):
        JsonlTap(path=path)
    assert path.read_bytes() == content


@pytest.mark.parametrize("offset", [0, 123456789, 2**64 - 1])
def test_a_first_write_cut_anywhere_starts_over(tmp_path: Path, offset: int) -> None:
    """Cut at any byte, a first write is known as the tap's own, however long its line."""
    path = tmp_path / "audit.jsonl"
    whole = line(offset, 3 * WINDOW)
    for cut in [*range(1, 220), WINDOW, 2 * WINDOW + 1, len(whole) - 1]:
        path.write_bytes(whole[:cut])
        assert JsonlTap(path=path).position("audit") is None, cut
        assert path.read_bytes() == b""


def test_a_first_write_of_the_tap_itself_cut_anywhere_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with chanlog.EventStore() as store:
        fill(store, turns=1)
        tap = JsonlTap(path=path)
        tap(next(iter(store)))
        tap.close()
    whole = path.read_bytes().splitlines(keepends=True)[0]
    for cut in range(1, len(whole)):
        path.write_bytes(whole[:cut])
        assert JsonlTap(path=path).position("audit") is None, cut
        assert path.read_bytes() == b""
