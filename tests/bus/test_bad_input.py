"""Issue 15, bad input: an unknown handler or broker, a malformed pattern, a start beyond the
log, a misspelled ``[bus]`` key, a handler's missing required option and a reset of an
unknown consumer are each a clear error, through the API
(:class:`~chanlog.errors.ConfigError` naming its key) and through the ``chanlog`` console
script (exit 2 or 3, one line), and nothing is written."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chanlog
from bus.conftest import fill
from bus.processes import cli, environment
from chanlog.bus.worker import Worker
from chanlog.cli.errors import ExitCode
from chanlog.errors import ConfigError, InvalidArgument, NotFound
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost

BAD_CONFIGS = [
    ({"consumers": {"x": {"handler": "nope"}}}, "consumers.x.handler", "no handler named 'nope'"),
    (
        {"bus": {"broker": "nope"}, "consumers": {"x": {"handler": "jsonl", "path": "a"}}},
        "bus.broker",
        "no broker named 'nope'",
    ),
    (
        {"consumers": {"x": {"handler": "jsonl", "path": "a", "subjects": ["chanlog.>.x"]}}},
        "consumers.x.subjects",
        "malformed subject pattern 'chanlog.>.x'",
    ),
    (
        {"consumers": {"x": {"handler": "jsonl", "path": "a", "subjects": ["chanlog.a*"]}}},
        "consumers.x.subjects",
        "malformed subject pattern 'chanlog.a*'",
    ),
    (
        {"consumers": {"x": {"handler": "jsonl", "path": "a", "start": "soon"}}},
        "consumers.x.start",
        "start must be",
    ),
    (
        {"bus": {"prefx": "node-a"}, "consumers": {"x": {"handler": "jsonl", "path": "a"}}},
        "bus.prefx",
        "unknown key (allowed: broker, prefix)",
    ),
    (
        # A typo of a required option is named as such, not as the option missing.
        {"consumers": {"x": {"handler": "jsonl", "pth": "a"}}},
        "consumers.x.pth",
        "unknown key of the jsonl handler (allowed: fsync, path; and handler,",
    ),
    (
        {"consumers": {"x": {"handler": "jsonl"}}},
        "consumers.x.path",
        "is required by the jsonl handler",
    ),
    (
        {"consumers": {"x": {"handler": "jsonl", "path": "a", "fsnyc": 1}}},
        "consumers.x.fsnyc",
        "unknown key of the jsonl handler",
    ),
]


def _toml(config: dict[str, Any], path: Path) -> str:
    lines = ["[backend]", 'name = "sqlite"', f'path = "{path}"']
    for table, body in config.items():
        for name, value in body.items():
            if isinstance(value, dict):
                lines.append(f"[{table}.{name}]")
                lines += [f"{k} = {_value(v)}" for k, v in value.items()]
            else:
                lines.insert(3, f"[{table}]\n{name} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.mark.parametrize(("config", "key", "problem"), BAD_CONFIGS)
def test_bad_bus_settings_are_config_errors_naming_the_key(
    tmp_path: Path, config: dict[str, Any], key: str, problem: str
) -> None:
    log = tmp_path / "log.db"
    with pytest.raises(ConfigError, match=re.escape(problem)) as caught:
        chanlog.load_config({"backend": {"name": "sqlite", "path": str(log)}, **config})
    assert caught.value.key == key
    (tmp_path / "chanlog.toml").write_text(_toml(config, log))
    with pytest.raises(ConfigError, match=re.escape(problem)) as opened:
        chanlog.open(tmp_path / "chanlog.toml")
    assert opened.value.key == key
    assert not log.exists()


@pytest.mark.parametrize(("config", "key", "problem"), BAD_CONFIGS)
def test_chanlog_run_refuses_bad_bus_settings_before_creating_anything(
    tmp_path: Path, config: dict[str, Any], key: str, problem: str
) -> None:
    (tmp_path / "chanlog.toml").write_text(_toml(config, tmp_path / "log.db"))
    result = cli("run", cwd=tmp_path, env=environment())
    assert result.returncode == ExitCode.USAGE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("chanlog: configuration error: ") and f"{key}: " in line
    assert problem in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chanlog.toml"]


class _Factories:
    """A plugin registering the handler ``counted``, whose factory counts its calls."""

    def __init__(self) -> None:
        self.built = 0

    @hookimpl
    def chanlog_register_handlers(self, register: Callable[..., None]) -> None:
        def factory(**options: Any) -> Callable[[Any], None]:
            self.built += 1
            return lambda record: None

        register("counted", factory)


def test_a_start_beyond_the_log_is_refused_before_any_handler_is_built() -> None:
    host = PluginHost(load_entry_points=False)
    factories = _Factories()
    host.register(factories, name="counted")
    store = chanlog.EventStore(plugins=host)
    fill(store)
    length = len(store)
    config = chanlog.load_config(
        {
            "backend": "memory",
            "consumers": {
                "ok": {"handler": "counted"},
                "far": {"handler": "counted", "start": length + 1},
            },
        },
        plugins=host,
    )
    with pytest.raises(ConfigError, match=r"consumers.far.start = \d+ is beyond") as caught:
        Worker(store, store.bus, config.bus, host.handlers, host.ingest_sources)
    assert caught.value.key == "consumers.far.start"
    assert factories.built == 0
    assert store.bus.consumers.states() == []
    # The runner refuses it too, before writing anything.
    with pytest.raises(InvalidArgument, match="beyond the end of the log"):
        store.bus.consumer("far", lambda record: None, start=length + 1).start()
    assert store.bus.consumers.states() == []
    # At the end of the log is fine, and an existing consumer's start no longer matters.
    Worker(store, store.bus, config.bus, host.handlers, host.ingest_sources, frozenset({"ok"}))
    store.bus.consumer("far", lambda record: None, start=length).start()
    Worker(store, store.bus, config.bus, host.handlers, host.ingest_sources).close()
    assert factories.built == 3


def test_a_reset_of_an_unknown_consumer_is_not_found() -> None:
    store = chanlog.EventStore()
    fill(store)
    with pytest.raises(NotFound, match="no consumer named 'nope'"):
        store.bus.consumers.reset("nope", "earliest")
    assert store.bus.consumers.states() == []


def _consumer_rows(log: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{log}?mode=ro", uri=True)
    try:
        return db.execute("SELECT name, position FROM consumers").fetchall()
    finally:
        db.close()


def _files(directory: Path) -> list[str]:
    """The files in ``directory`` (SQLite's -wal and -shm files come and go with readers)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(("-wal", "-shm")))


def _length(log: Path) -> int:
    with chanlog.open({"backend": {"name": "sqlite", "path": str(log)}}, read_only=True) as store:
        return len(store)


def test_the_cli_refuses_a_start_beyond_the_log_and_unknown_consumers(tmp_path: Path) -> None:
    env = environment()
    (tmp_path / "chanlog.toml").write_text(
        '[backend]\nname = "sqlite"\npath = "log.db"\n\n'
        '[consumers.tap]\nhandler = "jsonl"\npath = "tap.jsonl"\nstart = 1000\n\n'
        '[consumers.model]\nhandler = "channel-read-model"\npath = "model.db"\n'
    )
    generated = cli("generate", "--channels", "1", "--turns", "1", cwd=tmp_path, env=env)
    assert generated.returncode == 0, generated.stderr
    log = tmp_path / "log.db"
    before = _files(tmp_path)
    length = _length(log)

    result = cli("run", cwd=tmp_path, env=env)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        f"chanlog: configuration error: {tmp_path / 'chanlog.toml'}: consumers.tap.start = "
        "1000 is beyond the end of the "
        f'log ({length} records); start it at "earliest", "latest" or an offset up to '
        f"{length} (a log shorter than its start was chosen for may have lost records: a "
        "backup restored, a failover to a replica that was behind)\n"
    )
    # Neither handler was built (no tap file, no read model), no consumer was created.
    assert _files(tmp_path) == before
    assert _consumer_rows(log) == []

    for args in (
        ("consumers", "reset", "nope", "--to", "earliest"),
        ("consumers", "parked", "nope"),
        ("consumers", "replay", "nope"),
        ("consumers", "drop", "nope"),
    ):
        refused = cli(*args, cwd=tmp_path, env=env)
        assert refused.returncode == ExitCode.NOT_FOUND, (args, refused.stderr)
        assert refused.stderr == "chanlog: not found: no consumer named 'nope' (consumers: none)\n"
    only = cli("run", "--only", "nope", cwd=tmp_path, env=env)
    assert only.returncode == ExitCode.USAGE
    assert "--only nope: no [consumers.nope]" in only.stderr
    assert _consumer_rows(log) == []
    assert (
        len(chanlog.open({"backend": {"name": "sqlite", "path": str(log)}}, read_only=True))
        == length
    )
