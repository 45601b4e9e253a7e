"""A healthy file caught in the middle of a checkpoint (issue 13).

SQLite's checkpoint copies the write-ahead log into the main file in page order, page 1 (whose
header states the new page count) first, so until it has written the pages that grow the file,
the main file is shorter than its header says. The pages it lacks are in the ``-wal`` file.
Such a file, seen by another process or left by a process killed then, must open; a file cut
short with no log holding the missing pages must still be refused untouched (ADR 0011).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import attrs
import pytest

from chanlog.backends import sqlite_wal
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import StorageError
from chanlog.store import EventStore
from chanlog.testing import sample_events

CHILD = Path(__file__).with_name("checkpoint_child.py")
WAL_MAGIC = 0x377F0682
WAL_HEADER = 32
FRAME_HEADER = 24


# -- the write-ahead log format, written out plainly (fileformat2.html#walformat) ------------


def reference_checksum(
    data: bytes, *, big_endian: bool, state: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """SQLite's write-ahead-log checksum, word pair by word pair."""
    first, second = state
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for index in range(0, len(words), 2):
        first = (first + words[index] + second) & 0xFFFFFFFF
        second = (second + words[index + 1] + first) & 0xFFFFFFFF
    return first, second


@attrs.frozen
class Frame:
    page: int
    size_after: int  # the database size in pages after a commit frame, else 0
    body: bytes


@attrs.frozen
class Wal:
    page_size: int
    big_endian: bool
    salts: bytes
    frames: list[Frame]  # the valid frames, up to the last commit frame

    @classmethod
    def parse(cls, data: bytes) -> Wal:
        magic, _, page_size, _, _, _, sum1, sum2 = struct.unpack(">8I", data[:WAL_HEADER])
        assert magic & ~1 == WAL_MAGIC
        big_endian = bool(magic & 1)
        assert reference_checksum(data[:24], big_endian=big_endian) == (sum1, sum2)
        salts = data[16:24]
        state = (sum1, sum2)
        frames: list[Frame] = []
        committed = 0
        size = FRAME_HEADER + page_size
        for offset in range(WAL_HEADER, len(data) - size + 1, size):
            page, size_after, frame_salts, frame1, frame2 = struct.unpack_from(
                ">II8sII", data, offset
            )
            body = data[offset + FRAME_HEADER : offset + size]
            state = reference_checksum(
                data[offset : offset + 8], big_endian=big_endian, state=state
            )
            state = reference_checksum(body, big_endian=big_endian, state=state)
            if frame_salts != salts or page == 0 or state != (frame1, frame2):
                break
            frames.append(Frame(page, size_after, body))
            if size_after:
                committed = len(frames)
        return cls(page_size, big_endian, salts, frames[:committed])

    def encode(self, *, big_endian: bool | None = None) -> bytes:
        """The log as SQLite would write it (checksums in ``big_endian`` order if given)."""
        big = self.big_endian if big_endian is None else big_endian
        header = struct.pack(">4I", WAL_MAGIC | big, 3007000, self.page_size, 0) + self.salts
        state = reference_checksum(header, big_endian=big)
        out = [header, struct.pack(">2I", *state)]
        for frame in self.frames:
            start = struct.pack(">2I", frame.page, frame.size_after)
            state = reference_checksum(start, big_endian=big, state=state)
            state = reference_checksum(frame.body, big_endian=big, state=state)
            out += [start, self.salts, struct.pack(">2I", *state), frame.body]
        return b"".join(out)

    def newest(self) -> dict[int, bytes]:
        """The newest committed copy of each page."""
        return {frame.page: frame.body for frame in self.frames}


def main_state(path: Path) -> tuple[int, int]:
    """The main file's size and the size its header states, read with plain file I/O."""
    with path.open("rb") as handle:
        header = handle.read(100)
        size = os.fstat(handle.fileno()).st_size
    if len(header) < 100 or header[24:28] != header[92:96]:
        return size, 0
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    return size, int.from_bytes(header[28:32], "big") * page_size


def is_short(path: Path) -> bool:
    size, stated = main_state(path)
    return size < stated


def interrupt_checkpoint(main: Path, wal: Wal, *, stop_at: int, partial: int = 0) -> None:
    """Do to ``main`` what SQLite's checkpoint of ``wal`` does until it is stopped: write the
    newest committed copy of each page in page order (page 1 first), the pages before page
    ``stop_at`` whole and ``partial`` bytes of that one."""
    newest = wal.newest()
    with main.open("r+b") as handle:
        for page in sorted(newest):
            if page > stop_at or (page == stop_at and not partial):
                break
            handle.seek((page - 1) * wal.page_size)
            handle.write(newest[page] if page < stop_at else newest[page][:partial])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def assert_refused_untouched(path: Path) -> None:
    """Opening ``path`` is refused as truncated and changes no file beside it (nor adds one)."""
    before = snapshot(path.parent)
    with pytest.raises(StorageError, match="truncated database file") as error:
        SqliteBackend(path)
    assert "no write-ahead log holds the missing pages" in str(error.value)
    assert snapshot(path.parent) == before


# -- a file caught in the middle of a checkpoint, built from a real log ----------------------


@attrs.frozen
class MidCheckpoint:
    """A chanlog file and its write-ahead log copied aside while the log held changes, and
    what a checkpoint of that log would leave in the file."""

    directory: Path
    original: bytes  # the main file as it was, before its log was copied into it
    wal: Wal
    wal_bytes: bytes
    event_ids: list[str]  # the whole log, in order

    @property
    def main(self) -> Path:
        return self.directory / "log.db"

    @property
    def wal_path(self) -> Path:
        return self.directory / "log.db-wal"

    @property
    def old_pages(self) -> int:
        return len(self.original) // self.wal.page_size

    @property
    def new_pages(self) -> int:
        return max(frame.size_after for frame in self.wal.frames)

    def reset(self, *, stop_at: int, partial: int = 0, with_wal: bool = True) -> Path:
        for name in os.listdir(self.directory):
            (self.directory / name).unlink()
        self.main.write_bytes(self.original)
        if with_wal:
            self.wal_path.write_bytes(self.wal_bytes)
        interrupt_checkpoint(self.main, self.wal, stop_at=stop_at, partial=partial)
        return self.main


@pytest.fixture(scope="module")
def mid_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> MidCheckpoint:
    source = tmp_path_factory.mktemp("source") / "log.db"
    with EventStore(SqliteBackend(source), projections=[]) as store:
        store.append_batch(sample_events(300))
    # Closed: the main file is whole and there is no log. Four more batches go to the log.
    store = EventStore(SqliteBackend(source), projections=[])
    try:
        for batch in range(4):
            store.append_batch(sample_events(500, start=300 + 500 * batch))
        original = source.read_bytes()
        wal_bytes = Path(f"{source}-wal").read_bytes()
        event_ids = [record.event_id for record in store.read_from(0)]
    finally:
        store.close()
    wal = Wal.parse(wal_bytes)
    assert wal.big_endian == (sys.byteorder == "big")  # SQLite writes native checksums
    assert [frame.size_after > 0 for frame in wal.frames].count(True) == 4
    directory = tmp_path_factory.mktemp("copy")
    built = MidCheckpoint(directory, original, wal, wal_bytes, event_ids)
    assert 1 in wal.newest()
    assert built.new_pages > built.old_pages + 20
    return built


def _stops(built: MidCheckpoint) -> dict[str, tuple[int, int]]:
    """Where a checkpoint may be stopped: (stop_at, partial bytes)."""
    middle = (built.old_pages + built.new_pages) // 2
    return {
        "after page 1": (2, 0),
        "at the old end": (built.old_pages + 1, 0),
        "among the new pages": (middle, 0),
        "inside a new page": (middle, 1000),
        "before the last page": (built.new_pages, 0),
    }


STOPS = (
    "after page 1",
    "at the old end",
    "among the new pages",
    "inside a new page",
    "before the last page",
)


def _assert_opens_with_every_record(built: MidCheckpoint, path: Path) -> None:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert [record.event_id for record in store.read_from(0)] == built.event_ids
        assert store.verify() == len(built.event_ids)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()


@pytest.mark.parametrize("stop", STOPS)
def test_a_file_caught_mid_checkpoint_opens_with_every_record(
    mid_checkpoint: MidCheckpoint, stop: str
) -> None:
    stop_at, partial = _stops(mid_checkpoint)[stop]
    path = mid_checkpoint.reset(stop_at=stop_at, partial=partial)
    assert is_short(path)
    _assert_opens_with_every_record(mid_checkpoint, path)


@pytest.mark.parametrize("stop", STOPS)
def test_the_same_file_without_its_wal_is_refused_untouched(
    mid_checkpoint: MidCheckpoint, stop: str
) -> None:
    stop_at, partial = _stops(mid_checkpoint)[stop]
    assert_refused_untouched(mid_checkpoint.reset(stop_at=stop_at, partial=partial, with_wal=False))


def test_a_partly_written_page_without_its_wal_is_refused_as_not_whole_pages(
    mid_checkpoint: MidCheckpoint,
) -> None:
    stop_at, partial = _stops(mid_checkpoint)["inside a new page"]
    path = mid_checkpoint.reset(stop_at=stop_at, partial=partial, with_wal=False)
    with pytest.raises(StorageError, match="is not a whole number of 4096-byte pages"):
        SqliteBackend(path)


def test_a_wal_with_checksums_of_the_other_byte_order_is_read_too(
    mid_checkpoint: MidCheckpoint,
) -> None:
    stop_at, _ = _stops(mid_checkpoint)["among the new pages"]
    path = mid_checkpoint.reset(stop_at=stop_at)
    # SQLite writes native checksums but reads either kind: rewrite the log the other way.
    mid_checkpoint.wal_path.write_bytes(
        mid_checkpoint.wal.encode(big_endian=not mid_checkpoint.wal.big_endian)
    )
    _assert_opens_with_every_record(mid_checkpoint, path)


def _damaged(built: MidCheckpoint, damage: str) -> bytes:
    wal = built.wal
    data = bytearray(built.wal_bytes)
    frame_size = FRAME_HEADER + wal.page_size
    first_frame = WAL_HEADER
    if damage == "a changed byte in a page":
        data[first_frame + FRAME_HEADER + 100] ^= 0x01
    elif damage == "another log's salt in a frame":
        data[first_frame + 8] ^= 0x01
    elif damage == "a changed byte in the log header":
        data[12] ^= 0x01  # the checkpoint sequence number, under the header checksum
    elif damage == "not a log":
        data[:4] = b"\x37\x7f\x06\x84"
    elif damage == "another page size":
        header = struct.pack(">4I", WAL_MAGIC, 3007000, 2 * wal.page_size, 0) + wal.salts
        data[:32] = header + struct.pack(">2I", *reference_checksum(header, big_endian=False))
    elif damage == "cut before the last commit":
        del data[WAL_HEADER + (len(wal.frames) - 1) * frame_size :]
    elif damage == "cut to a few frames":
        del data[WAL_HEADER + 3 * frame_size :]
    elif damage == "only a header":
        del data[WAL_HEADER:]
    elif damage == "empty":
        del data[:]
    else:  # pragma: no cover
        raise AssertionError(damage)
    return bytes(data)


@pytest.mark.parametrize(
    "damage",
    [
        "a changed byte in a page",
        "another log's salt in a frame",
        "a changed byte in the log header",
        "not a log",
        "another page size",
        "cut before the last commit",
        "cut to a few frames",
        "only a header",
        "empty",
    ],
)
def test_a_wal_that_does_not_prove_the_missing_pages_is_refused_untouched(
    mid_checkpoint: MidCheckpoint, damage: str
) -> None:
    # The checkpoint stopped at the old end: every new page is missing, the last batch's too.
    path = mid_checkpoint.reset(stop_at=mid_checkpoint.old_pages + 1)
    mid_checkpoint.wal_path.write_bytes(_damaged(mid_checkpoint, damage))
    assert_refused_untouched(path)


def test_a_header_claiming_more_pages_than_the_wal_ever_held_is_refused(
    mid_checkpoint: MidCheckpoint,
) -> None:
    path = mid_checkpoint.reset(stop_at=mid_checkpoint.new_pages)
    data = bytearray(path.read_bytes())
    data[28:32] = (mid_checkpoint.new_pages + 5).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    assert_refused_untouched(path)


def test_a_file_cut_below_its_last_checkpoint_is_refused_though_a_wal_is_beside_it(
    mid_checkpoint: MidCheckpoint,
) -> None:
    # The checkpoint finished and the file was cut afterwards: its first pages are not in
    # the log (they were written before the log began), so the log does not explain it.
    path = mid_checkpoint.reset(stop_at=mid_checkpoint.new_pages + 1)
    assert not is_short(path)
    page_size = mid_checkpoint.wal.page_size
    with path.open("r+b") as handle:
        handle.truncate(page_size * (mid_checkpoint.old_pages // 2))
    assert is_short(path)
    assert_refused_untouched(path)


# -- a writer finishing its checkpoint between the reads -----------------------------------


def test_a_checkpoint_finished_while_the_wal_was_read_is_read_again_and_accepted(
    mid_checkpoint: MidCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mid_checkpoint.reset(stop_at=mid_checkpoint.old_pages + 1)
    real = sqlite_wal.wal_holds
    looks: list[bool] = []

    def log_reset_meanwhile(wal: Path, page_size: int, first: int, last: int) -> bool:
        if not looks:
            # The writer finishes the checkpoint, then starts a new log: the old frames go.
            interrupt_checkpoint(path, mid_checkpoint.wal, stop_at=mid_checkpoint.new_pages + 1)
            wal.write_bytes(_damaged(mid_checkpoint, "only a header"))
        looks.append(real(wal, page_size, first, last))
        return looks[-1]

    monkeypatch.setattr(sqlite_wal, "wal_holds", log_reset_meanwhile)
    SqliteBackend(path).close()
    assert looks == [False]  # the second read found the file whole


def test_a_file_that_stays_short_is_read_twice_then_refused(
    mid_checkpoint: MidCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mid_checkpoint.reset(stop_at=2, with_wal=False)
    reads: list[int] = []
    real = sqlite_wal.read_start

    def counting(path: Path) -> tuple[bytes, int]:
        reads.append(1)
        return real(path)

    monkeypatch.setattr(sqlite_wal, "read_start", counting)
    assert_refused_untouched(path)
    assert len(reads) == 2


def test_a_file_that_keeps_changing_is_refused_after_a_few_reads(
    mid_checkpoint: MidCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mid_checkpoint.reset(stop_at=2, with_wal=False)
    looks: list[int] = []

    def growing(wal: Path, page_size: int, first: int, last: int) -> bool:
        looks.append(first)
        with path.open("ab") as handle:  # a writer extending the file, never to the end
            handle.write(b"\x00" * page_size)
        return False

    monkeypatch.setattr(sqlite_wal, "wal_holds", growing)
    with pytest.raises(StorageError, match="truncated database file"):
        SqliteBackend(path)
    assert len(looks) == sqlite_wal.RECHECKS + 1
    assert looks == sorted(set(looks))  # each look saw the file longer


# -- the checksum and the page accounting -------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize(("page_size", "count"), [(512, 1), (512, 7), (4096, 2), (65536, 3)])
def test_frame_checksums_match_the_plain_definition(
    big_endian: bool, page_size: int, count: int
) -> None:
    chooser = random.Random(page_size * count + big_endian)
    frames = bytearray(chooser.randbytes(count * (FRAME_HEADER + page_size)))
    state = (chooser.getrandbits(32), chooser.getrandbits(32))
    expected = []
    running = state
    for index in range(count):
        offset = index * (FRAME_HEADER + page_size)
        running = reference_checksum(
            bytes(frames[offset : offset + 8]), big_endian=big_endian, state=running
        )
        body = bytes(frames[offset + FRAME_HEADER : offset + FRAME_HEADER + page_size])
        running = reference_checksum(body, big_endian=big_endian, state=running)
        expected.append(running)
    order: Literal["big", "little"] = "big" if big_endian else "little"
    got = sqlite_wal.frame_checksums(memoryview(frames), count, page_size, order, state)
    assert got == expected


def _write_wal(path: Path, page_size: int, frames: list[tuple[int, int]]) -> None:
    bodies = [
        Frame(page, size_after, bytes([page % 251]) * page_size) for page, size_after in frames
    ]
    path.write_bytes(Wal(page_size, False, b"saltsalt", bodies).encode())


def test_the_pending_byte_page_need_not_be_in_the_wal(tmp_path: Path) -> None:
    # SQLite never writes the page holding the lock bytes at 1 GiB, in the log or the file.
    wal = tmp_path / "big.db-wal"
    pending = 0x40000000 // 512 + 1
    _write_wal(wal, 512, [(pending - 1, 0), (pending + 1, pending + 1)])
    assert sqlite_wal.wal_holds(wal, 512, pending - 1, pending + 1)
    assert not sqlite_wal.wal_holds(wal, 512, pending - 2, pending + 1)


def test_pages_count_only_once_committed(tmp_path: Path) -> None:
    wal = tmp_path / "x.db-wal"
    _write_wal(wal, 512, [(1, 0), (5, 0), (6, 6), (7, 0), (8, 0)])
    holds = sqlite_wal.wal_holds
    assert holds(wal, 512, 5, 6)
    assert holds(wal, 512, 6, 6)
    assert not holds(wal, 512, 5, 7)  # page 7 is in frames no commit frame follows
    assert not holds(wal, 512, 4, 6)  # page 4 is nowhere
    assert not holds(wal, 1024, 5, 6)  # the log is of another page size
    assert not holds(tmp_path / "absent-wal", 512, 5, 6)
    assert holds(tmp_path / "absent-wal", 512, 5, 4)  # nothing missing


# -- real processes: killed mid-checkpoint, and reopened beside a live writer --------------


def _spawn(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    ready = child.stdout.readline()
    assert ready == "ready\n", child.stderr.read() if child.stderr else ready


def _reap(child: subprocess.Popen[str]) -> None:
    child.wait(timeout=30)
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()


@attrs.define
class Acknowledged:
    """What a crash child recorded: the offset of each acknowledged event, and the ids of
    the batch it had begun."""

    offsets: dict[str, int]
    in_flight: list[str]

    @classmethod
    def read(cls, path: Path) -> Acknowledged:
        offsets: dict[str, int] = {}
        in_flight: list[str] = []
        text = path.read_text() if path.exists() else ""
        for line in text[: text.rfind("\n") + 1].splitlines():
            kind, _, *values = line.split(" ")
            if kind == "I":
                in_flight = values
            else:
                offsets.update(zip(in_flight, map(int, values), strict=True))
                in_flight = []
        return cls(offsets, in_flight)


KILLS = 26
AIMED = range(0, KILLS, 2)  # these kills wait for the file to be short; the others are random
ROUNDS_PER_FILE = 6  # a fresh file now and then keeps verify() cheap


def _kill_when_short(child: subprocess.Popen[str], path: Path, *, timeout: float) -> bool:
    """SIGKILL ``child`` as soon as ``path`` is shorter than its header says; whether it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if is_short(path):
            os.kill(child.pid, signal.SIGKILL)
            return True
    os.kill(child.pid, signal.SIGKILL)
    return False


@pytest.mark.slow
def test_sigkill_mid_checkpoint_leaves_a_file_that_reopens_with_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    chooser = random.Random(13)
    landed = 0  # kills after which the file was shorter than its header says
    seen_short = 0
    path = tmp_path / "unused.db"
    log: list[str] = []
    for round_number in range(KILLS):
        if round_number % ROUNDS_PER_FILE == 0:
            path = tmp_path / f"crash-{round_number // ROUNDS_PER_FILE}.db"
            log = []
        side_file = tmp_path / f"acknowledged-{round_number}.log"
        child = _spawn("crash", str(path), str(side_file), str(round_number))
        _wait_ready(child)
        if round_number in AIMED:
            seen_short += _kill_when_short(child, path, timeout=30)
        else:
            time.sleep(chooser.uniform(0.0, 0.6))
            os.kill(child.pid, signal.SIGKILL)
        _reap(child)
        assert child.returncode == -signal.SIGKILL

        # Before anything opens it: the state the old header check refused.
        short = is_short(path)
        if short:
            assert Path(f"{path}-wal").exists()
            landed += 1
        recorded = Acknowledged.read(side_file)
        with EventStore(SqliteBackend(path), projections=[]) as store:
            ids = [record.event_id for record in store.read_from(0)]
            assert store.verify() == len(ids)
        where = f"round {round_number} ({'short' if short else 'whole'})"
        assert ids[: len(log)] == log, f"{where}: earlier events changed"
        for event_id, offset in recorded.offsets.items():
            assert ids[offset] == event_id, f"{where}: lost acknowledged offset {offset}"
        in_order = sorted(recorded.offsets, key=recorded.offsets.__getitem__)
        end = len(log) + len(in_order)
        assert ids[len(log) : end] == in_order, f"{where}: acknowledged events out of place"
        assert ids[end:] in ([], recorded.in_flight), f"{where}: torn batch"
        log = ids
    print(f"{landed} of {KILLS} kills left the file short ({seen_short} aimed kills saw it so)")
    assert seen_short >= 5
    assert landed >= 5


READER_SECONDS = 12.0
MIN_REOPENS = 500


@pytest.mark.slow
def test_reopening_beside_a_checkpointing_writer_is_never_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared.db"
    SqliteBackend(path).close()
    stop_file = tmp_path / "stop"
    writer = _spawn("write", str(path), str(stop_file))
    _wait_ready(writer)

    explained = 0  # reopens that found the file short and its log holding the rest
    real = sqlite_wal.wal_holds

    def counting(wal: Path, page_size: int, first: int, last: int) -> bool:
        nonlocal explained
        held = real(wal, page_size, first, last)
        explained += held
        return held

    monkeypatch.setattr(sqlite_wal, "wal_holds", counting)
    reopens = 0
    refused: list[str] = []
    deadline = time.monotonic() + READER_SECONDS
    try:
        while reopens < MIN_REOPENS or (time.monotonic() < deadline and not explained):
            try:
                SqliteBackend(path).close()
            except StorageError as exc:
                refused.append(str(exc))
            reopens += 1
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
    finally:
        stop_file.touch()
        stdout, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 0, stderr
    batches = int(stdout.split()[-1])
    print(f"{reopens} reopens, {explained} found the file short and the log holding the rest")
    assert refused == []
    assert explained >= 1
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == batches * 500
