"""Options of a handler, an ingest source or a broker that a plugin declares
(``accepted_options``, ``required_options``) are checked when the configuration is read,
by every command and before anything is opened:

- an ``[ingest.NAME]`` typo is an unknown key, naming it (it was "stream is required");
- a refused ``chanlog run`` on a brand-new configuration creates no log (a typo in a
  consumer's or an ingest's table once left an empty ``chanlog.db`` behind);
- a ``[bus]`` option typo of a plugin broker is refused by the commands that only read
  too (only ``run``, which builds the broker, refused it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.test_console_script import assert_user_error, chanlog


def _configured(tmp_path: Path, tables: str) -> Path:
    assert chanlog("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "chanlog.toml"
    config.write_text(config.read_text() + "\n" + tables)
    return config


def test_an_ingest_option_typo_is_an_unknown_key(tmp_path: Path) -> None:
    config = _configured(
        tmp_path, '[ingest.replica]\nsource = "nats"\nstreem = "node"\ndurable = "d"\n'
    )
    for command in ("run", "stats"):
        result = chanlog(command, cwd=tmp_path)
        assert_user_error(
            result,
            2,
            f"configuration error: {config}: ingest.replica.streem: unknown key of the nats "
            "ingest source (allowed: ack_wait, batch, connect_timeout, durable, fetch_timeout, "
            "filter_subject, lease_ttl, mirror, stream, url; and source)",
        )
        assert not (tmp_path / "chanlog.db").exists()


def test_an_option_typo_of_chanlog_ingest_is_an_unknown_key(tmp_path: Path) -> None:
    result = chanlog("--db", "x.db", "ingest", "nats", "--streem", "node", cwd=tmp_path)
    assert_user_error(
        result, 2, "--streem: the nats ingest source has no such option (it takes --stream, "
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        (
            '[consumers.audit]\nhandler = "jsonl"\npath = "audit.jsonl"\nfsnyc = true\n',
            "consumers.audit.fsnyc: unknown key of the jsonl handler (allowed: fsync, path; and "
            "handler, subjects, start, max_deliver, backoff, commit_every, lease_ttl, "
            "batch_size, commit_interval_ms)",
        ),
        (
            '[consumers.read]\nhandler = "channel-read-model"\npath = "r.db"\nfoo = 1\n',
            "consumers.read.foo: unknown key of the channel-read-model handler (allowed: path; and",
        ),
        (
            '[consumers.out]\nhandler = "nats-relay"\nurl = "nats://127.0.0.1:1"\n',
            "consumers.out.stream: is required by the nats-relay handler",
        ),
        (
            '[ingest.replica]\nsource = "nats"\nstream = "node"\n',
            "ingest.replica.durable: is required by the nats ingest source",
        ),
    ],
)
def test_a_refused_run_on_a_new_configuration_creates_no_log(
    tmp_path: Path, tables: str, said: str
) -> None:
    _configured(tmp_path, tables)
    result = chanlog("run", cwd=tmp_path)
    assert_user_error(result, 2, said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chanlog.toml"]


@pytest.mark.parametrize("command", [("stats",), ("verify",), ("consumers",), ("log",)])
def test_a_broker_option_typo_is_refused_by_commands_that_only_read(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = _configured(tmp_path, "")
    assert chanlog("generate", "--channels", "1", cwd=tmp_path).returncode == 0
    text = config.read_text()
    config.write_text(f'{text}\n[bus]\nbroker = "nats"\nulr = "nats://127.0.0.1:1"\n')
    result = chanlog(*command, cwd=tmp_path)
    assert_user_error(
        result,
        2,
        f"{config}: bus.ulr: unknown key of the nats broker "
        "(allowed: connect_timeout, live_prefix, url; and broker, prefix)",
    )
