"""A timestamp no datetime holds (after the year 9999, up to 2**64 - 1 ms, which every
event type accepts) is printed as its milliseconds. Found by the review of 2026-12-07:
``chanlog log`` of a log holding one ended in a traceback (ValueError: year 584556019 is
out of range), on every backend, while ``export`` and ``verify`` read it."""

from __future__ import annotations

import datetime

import orjson
import pytest

from chanlog.cli.output import format_timestamp
from cli.conftest import Run

LAST_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@pytest.mark.parametrize("timestamp_ms", [LAST_DATETIME_MS + 1, 2**64 - 1])
def test_log_prints_a_timestamp_beyond_the_year_9999_as_its_milliseconds(
    run: Run, timestamp_ms: int
) -> None:
    created = {
        "type": "objective-created",
        "payload": {
            "objective_id": "0x" + "ab" * 32,
            "objective_type": "DirectFund",
            "timestamp_ms": timestamp_ms,
        },
    }
    assert run("append", orjson.dumps(created).decode()).exit_code == 0
    result = run("log")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[2] == str(timestamp_ms)


def test_a_timestamp_a_datetime_holds_is_iso_8601() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(LAST_DATETIME_MS) == "9999-12-31T23:59:59.999Z"
    moment = datetime.datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=datetime.UTC)
    assert int(moment.timestamp() * 1000) == LAST_DATETIME_MS
