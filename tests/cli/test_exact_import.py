"""``chanlog export | chanlog import`` reproduces the log exactly: the same offsets, ids and
chain hashes (so ``verify --expect-head`` passes), whatever the importing store's snapshot
policy (issue 18 item 3, ADR 0032). Through the console script."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chanlog.cli.errors import ExitCode
from cli.test_console_script import assert_user_error, chanlog


def configure(directory: Path, name: str, snapshots: str = "") -> str:
    """A chanlog.toml for the log ``name``.db; ``snapshots`` is its [snapshots] table
    (empty: the default policy, every-n-events with n = 1000)."""
    path = directory / f"{name}.toml"
    path.write_text(f'[backend]\nname = "sqlite"\npath = "{name}.db"\n{snapshots}')
    return str(path)


def run_ok(directory: Path, *arguments: str, input: str | None = None) -> str:
    result = chanlog(*arguments, cwd=directory, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def head(directory: Path, config: str) -> str:
    verified = orjson.loads(run_ok(directory, "--config", config, "verify", "--json"))
    assert verified["ok"] is True
    text: str = verified["head"]
    return text


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A log of about 2,600 events written with the default configuration (so it holds
    snapshot-created events of its own), and its export."""
    directory = tmp_path_factory.mktemp("original")
    config = configure(directory, "original")
    run_ok(directory, "--config", config, "generate", "--channels", "60", "--turns", "10")
    exported = run_ok(directory, "--config", config, "export")
    return directory, config, exported


@pytest.mark.parametrize(
    "snapshots",
    ["", '[snapshots]\npolicy = "every-n-events"\nn = 7\n', '[snapshots]\npolicy = "never"\n'],
    ids=["default policy", "n = 7", "never"],
)
def test_export_then_import_is_an_exact_copy(
    original: tuple[Path, str, str], tmp_path: Path, snapshots: str
) -> None:
    directory, config, exported = original
    lines = exported.splitlines()
    assert len(lines) > 2000
    assert sum('"type":"snapshot-created"' in line for line in lines) >= 2
    copy = configure(tmp_path, "copy", snapshots)
    imported = orjson.loads(
        run_ok(tmp_path, "--config", copy, "import", "--json", "-", input=exported)
    )
    assert imported["read"] == imported["appended"] == len(lines)
    assert imported["exact_copy"] is True
    # The same records at the same offsets: the copy exports the same lines.
    assert run_ok(tmp_path, "--config", copy, "export") == exported
    expected = head(directory, config)
    assert head(tmp_path, copy) == expected
    run_ok(tmp_path, "--config", copy, "verify", "--expect-head", expected)


def test_the_copy_gets_the_snapshots_back(original: tuple[Path, str, str], tmp_path: Path) -> None:
    directory, config, exported = original
    copy = configure(tmp_path, "copy")
    imported = orjson.loads(
        run_ok(tmp_path, "--config", copy, "import", "--json", "-", input=exported)
    )
    announced = sum('"type":"snapshot-created"' in line for line in exported.splitlines())
    assert imported["snapshots_rebuilt"] == announced
    stats = [
        orjson.loads(run_ok(where, "--config", which, "stats", "--json"))["latest_snapshot"]
        for where, which in ((directory, config), (tmp_path, copy))
    ]
    assert stats[0] == stats[1]
    # The same snapshots as the original keeps: both apply the same retention.
    kept = [
        orjson.loads(run_ok(where, "--config", which, "verify", "--json"))["snapshots"]
        for where, which in ((directory, config), (tmp_path, copy))
    ]
    assert kept[0] == kept[1] <= announced


def test_an_interrupted_import_resumes(original: tuple[Path, str, str], tmp_path: Path) -> None:
    directory, config, exported = original
    copy = configure(tmp_path, "copy", '[snapshots]\npolicy = "every-n-events"\nn = 10\n')
    beginning = run_ok(directory, "--config", config, "export", "--to", "1500")
    run_ok(tmp_path, "--config", copy, "import", "-", input=beginning)
    again = orjson.loads(
        run_ok(tmp_path, "--config", copy, "import", "--json", "-", input=exported)
    )
    assert again["already_present"] == 1500
    assert run_ok(tmp_path, "--config", copy, "export") == exported
    rest = run_ok(directory, "--config", config, "export", "--from", "2000")
    assert (
        orjson.loads(run_ok(tmp_path, "--config", copy, "import", "--json", "-", input=rest))[
            "appended"
        ]
        == 0
    )


def test_a_log_that_is_not_a_beginning_of_the_export_is_refused(
    original: tuple[Path, str, str], tmp_path: Path
) -> None:
    _, _, exported = original
    copy = configure(tmp_path, "copy")
    run_ok(tmp_path, "--config", copy, "generate", "--channels", "1", "--seed", "9")
    before = run_ok(tmp_path, "--config", copy, "export")
    result = chanlog("--config", copy, "import", "-", cwd=tmp_path, input=exported)
    assert_user_error(
        result, ExitCode.INVALID_INPUT, "<stdin>:1:", "already holds another record at offset 0"
    )
    assert run_ok(tmp_path, "--config", copy, "export") == before


def test_a_changed_export_is_refused_at_its_line(
    original: tuple[Path, str, str], tmp_path: Path
) -> None:
    _, _, exported = original
    lines = exported.splitlines(keepends=True)
    changed = orjson.loads(lines[12])
    changed["chain_hash"] = "0x" + "00" * 32
    lines[12] = orjson.dumps(changed).decode() + "\n"
    copy = configure(tmp_path, "copy")
    result = chanlog(
        "--config", copy, "import", "--batch-size", "10", "-", cwd=tmp_path, input="".join(lines)
    )
    assert_user_error(
        result, ExitCode.INVALID_INPUT, "<stdin>:13:", "does not follow from the record before it"
    )
    assert len(run_ok(tmp_path, "--config", copy, "export").splitlines()) == 10
    gap = "".join(exported.splitlines(keepends=True)[:5] + exported.splitlines(keepends=True)[6:9])
    fresh = configure(tmp_path, "fresh")
    result = chanlog("--config", fresh, "import", "-", cwd=tmp_path, input=gap)
    assert_user_error(result, ExitCode.INVALID_INPUT, "<stdin>:6:", "offset 6 follows offset 4")


def test_the_copy_keeps_the_snapshots_its_policy_retains(
    original: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Snapshots are the importing store's: its retention applies to those the copy rebuilds,
    as it does to those it takes (the records are copied exactly either way)."""
    directory = original[0]
    dense = configure(directory, "dense", '[snapshots]\npolicy = "every-n-events"\nn = 100\n')
    generate = ["generate", "--channels", "60", "--turns", "10", "--batch-size", "50"]
    run_ok(directory, "--config", dense, *generate)
    exported = run_ok(directory, "--config", dense, "export")
    announced = sum('"type":"snapshot-created"' in line for line in exported.splitlines())
    kept = orjson.loads(run_ok(directory, "--config", dense, "snapshots", "--json"))
    copy = configure(tmp_path, "copy", '[snapshots]\npolicy = "every-n-events"\nn = 100\n')
    imported = orjson.loads(
        run_ok(tmp_path, "--config", copy, "import", "--json", "-", input=exported)
    )
    assert imported["snapshots_rebuilt"] == announced > 20
    copied = orjson.loads(run_ok(tmp_path, "--config", copy, "snapshots", "--json"))
    assert [s["offset"] for s in copied["snapshots"]] == [s["offset"] for s in kept["snapshots"]]
    assert len(copied["snapshots"]) < announced
    assert run_ok(tmp_path, "--config", copy, "export") == exported
