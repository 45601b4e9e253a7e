"""chanlog.open(...) / load_config: every source form, and every mistake named precisely."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path

import pytest

from chanlog import ConfigError, EventStore, PluginHost, hookimpl
from chanlog.backends.sqlite import SqliteBackend
from chanlog.cli.demo_events import demo_events
from chanlog.config import (
    build_store,
    find_config,
    load_config,
    open_store,
    read_settings,
)

EVENTS = demo_events()


@pytest.fixture
def host() -> PluginHost:
    """Built-ins only: what is installed in the shared venv must not change these tests."""
    return PluginHost(load_entry_points=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_chanlog_toml_resolves_sqlite_path_against_its_directory(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "node"
    config_dir.mkdir()
    config = write(
        config_dir / "chanlog.toml",
        '[backend]\nname = "sqlite"\npath = "data/log.db"\ndurability = "normal"\n',
    )
    (config_dir / "data").mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else: the path must not follow the cwd
    settings = load_config(config, plugins=host)
    assert settings.source == str(config)
    assert settings.backend == "sqlite"
    assert settings.backend_options == {
        "path": str(config_dir.resolve() / "data" / "log.db"),
        "durability": "normal",
    }
    with open_store(config, plugins=host) as store:
        assert isinstance(store.backend, SqliteBackend)
        assert store.backend.durability == "normal"
        store.append(EVENTS[0])
    assert (config_dir / "data" / "log.db").exists()


def test_sqlite_path_defaults_to_chanlog_db_beside_the_file(
    tmp_path: Path, host: PluginHost
) -> None:
    config = write(tmp_path / "chanlog.toml", 'serializer = "json"\n')
    settings = load_config(config, plugins=host)
    assert settings.backend == "sqlite"
    assert settings.backend_options == {"path": str(tmp_path.resolve() / "chanlog.db")}


def test_absolute_path_is_kept(tmp_path: Path, host: PluginHost) -> None:
    target = tmp_path / "elsewhere.db"
    config = write(tmp_path / "chanlog.toml", f'[backend]\npath = "{target.as_posix()}"\n')
    assert load_config(config, plugins=host).backend_options["path"] == target.as_posix()


def test_pyproject_tool_chanlog_table(tmp_path: Path, host: PluginHost) -> None:
    pyproject = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "node"\n\n[tool.chanlog]\nbackend = "memory"\nprojections = []\n',
    )
    settings = load_config(pyproject, plugins=host)
    assert (settings.backend, settings.projections) == ("memory", ())
    with open_store(pyproject, plugins=host) as store:
        assert store.projections == {}
        assert store.backend.name == "memory"


def test_pyproject_without_table_is_an_error(tmp_path: Path, host: PluginHost) -> None:
    pyproject = write(tmp_path / "pyproject.toml", '[project]\nname = "node"\n')
    with pytest.raises(ConfigError, match=r"has no \[tool.chanlog\] table") as caught:
        load_config(pyproject, plugins=host)
    assert caught.value.source == str(pyproject)
    assert caught.value.key == "tool.chanlog"


def test_pyproject_tool_chanlog_must_be_a_table(tmp_path: Path, host: PluginHost) -> None:
    pyproject = write(tmp_path / "pyproject.toml", '[tool]\nchanlog = "sqlite"\n')
    with pytest.raises(ConfigError, match=r"tool\.chanlog = 'sqlite': must be a table"):
        load_config(pyproject, plugins=host)


def test_dict_and_keyword_sources(host: PluginHost) -> None:
    from_dict = load_config({"backend": {"name": "memory"}}, plugins=host)
    assert (from_dict.source, from_dict.backend) == ("<dict>", "memory")
    from_kwargs = load_config(plugins=host, backend="memory", serializer="json")
    assert (from_kwargs.source, from_kwargs.backend) == ("<kwargs>", "memory")
    with open_store(plugins=host, backend="memory") as store:
        assert store.append(EVENTS[0]) == 0
        assert isinstance(store, EventStore)


def test_keywords_override_the_file(tmp_path: Path, host: PluginHost) -> None:
    config = write(tmp_path / "chanlog.toml", '[backend]\nname = "sqlite"\n')
    settings = load_config(config, plugins=host, backend="memory")
    assert settings.backend == "memory"
    assert settings.source == str(config)


def test_backend_given_as_a_bare_name(host: PluginHost) -> None:
    assert load_config({"backend": "memory"}, plugins=host).backend == "memory"


def test_snapshot_policy_and_options_reach_the_store(tmp_path: Path, host: PluginHost) -> None:
    config = write(
        tmp_path / "chanlog.toml",
        '[backend]\nname = "memory"\n\n[snapshots]\npolicy = "every-n-events"\nn = 5\n',
    )
    settings = load_config(config, plugins=host)
    assert (settings.snapshot_policy, settings.snapshot_options) == ("every-n-events", {"n": 5})
    with build_store(settings, plugins=host) as store:
        store.append_batch(EVENTS[:5])
        snapshot = store.backend.latest_snapshot()
        assert snapshot is not None
        assert snapshot.offset == 5


def test_checkpoint_spacing_reaches_the_store(tmp_path: Path, host: PluginHost) -> None:
    config = write(tmp_path / "chanlog.toml", '[backend]\nname = "memory"\ncheckpoint_every = 0\n')
    with pytest.raises(ConfigError, match="takes no options"):
        open_store(config, plugins=host)  # a top-level key, not a backend option
    config = write(tmp_path / "chanlog.toml", 'checkpoint_every = 2\nbackend = "memory"\n')
    settings = load_config(config, plugins=host)
    assert settings.checkpoint_every == 2
    with build_store(settings, plugins=host) as store:
        assert store.checkpoints.every == 2
    assert load_config({"backend": "memory"}, plugins=host).checkpoint_every == 32


@pytest.mark.parametrize(
    ("text", "key", "fragments"),
    [
        (
            'colour = "blue"\n',
            "colour",
            ["unknown key", "backend, bus, checkpoint_every, consumers"],
        ),
        ("checkpoint_every = -1\n", "checkpoint_every", ["= -1", "integer >= 0"]),
        ("checkpoint_every = true\n", "checkpoint_every", ["= True", "integer >= 0"]),
        ('serializer = "yaml"\n', "serializer", ["'yaml'", "no such serializer", "json"]),
        ("serializer = 7\n", "serializer", ["= 7", "must be a string"]),
        ('[backend]\nname = "oracle"\n', "backend.name", ["'oracle'", "memory, sqlite"]),
        ("[backend]\nname = 3\n", "backend.name", ["must be a string"]),
        ("backend = 3\n", "backend", ["must be a name or a table"]),
        ('projections = "objective"\n', "projections", ["must be a list", "channel"]),
        ('projections = ["objective", "ledger"]\n', "projections[1]", ["'ledger'", "messages"]),
        ("projections = [1]\n", "projections[0]", ["must be a string"]),
        ('projections = ["channel", "channel"]\n', "projections[1]", ["listed twice"]),
        ("[snapshots]\nn = 5\n", "snapshots.policy", ["is required", "every-n-events, never"]),
        ('[snapshots]\npolicy = "hourly"\n', "snapshots.policy", ["'hourly'", "never"]),
    ],
)
def test_bad_settings_name_file_key_value_and_allowed(
    tmp_path: Path, host: PluginHost, text: str, key: str, fragments: list[str]
) -> None:
    config = write(tmp_path / "chanlog.toml", text)
    with pytest.raises(ConfigError) as caught:
        open_store(config, plugins=host)
    error = caught.value
    assert error.source == str(config)
    assert error.key == key
    message = str(error)
    assert message.startswith(f"{config}: ")
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "chanlog.db").exists(), "nothing may be created for a bad config"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[backend]\nname = "sqlite"\ncolour = 1\n', "backend.colour", "unknown option 'colour'"),
        ('[backend]\ndurability = "fast"\n', "backend.durability", "'full' or 'normal'"),
        ('[snapshots]\npolicy = "every-n-events"\nn = 0\n', "snapshots.n", "n must be"),
        ('[snapshots]\npolicy = "never"\nn = 3\n', "snapshots.n", "has no option 'n'"),
    ],
)
def test_factory_errors_gain_the_source(
    tmp_path: Path, host: PluginHost, text: str, key: str, fragment: str
) -> None:
    config = write(tmp_path / "chanlog.toml", text)
    with pytest.raises(ConfigError) as caught:
        open_store(config, plugins=host)
    assert caught.value.source == str(config)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{config}: ")
    assert fragment in str(caught.value)


def test_options_checked_against_a_strict_factory_signature(host: PluginHost) -> None:
    class Strict:
        def __init__(self, *, size: int = 1) -> None:
            self.size = size

    @hookimpl
    def chanlog_register_backends(register: Callable[[str, object], None]) -> None:
        register("strict", Strict)

    plugin = types.SimpleNamespace(chanlog_register_backends=chanlog_register_backends)
    host.register(plugin, name="strict-plugin")
    with pytest.raises(ConfigError, match=r"backend.colour = 'red': unknown key \(allowed: size\)"):
        load_config({"backend": {"name": "strict", "colour": "red"}}, plugins=host)
    assert load_config(
        {"backend": {"name": "strict", "size": 2}}, plugins=host
    ).backend_options == {"size": 2}


def test_missing_serializer_names_it_and_the_installed_ones(host: PluginHost) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store({"backend": "memory", "serializer": "msgpack"}, plugins=host)
    assert caught.value.key == "serializer"
    assert "serializer = 'msgpack': no such serializer (allowed: json)" in str(caught.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path, host: PluginHost) -> None:
    config = write(tmp_path / "chanlog.toml", "[backend\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(config, plugins=host)
    assert caught.value.source == str(config)


def test_unreadable_sources(tmp_path: Path, host: PluginHost) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml", plugins=host)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, plugins=host)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_settings(binary)
    with pytest.raises(ConfigError, match="must be a path or a mapping, got int"):
        load_config(42, plugins=host)  # type: ignore[arg-type]


def test_a_byte_order_mark_first_is_read_past(tmp_path: Path, host: PluginHost) -> None:
    """Some editors (Windows' Notepad) start a UTF-8 file with one; the rest is the config."""
    config = tmp_path / "chanlog.toml"
    config.write_bytes(b"\xef\xbb\xbfserializer = 'json'\n[backend]\nname = 'memory'\n")
    assert read_settings(config) == {"serializer": "json", "backend": {"name": "memory"}}
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes(b"\xef\xbb\xbf[tool.chanlog]\nbackend = 'memory'\n")
    config.unlink()
    assert find_config(tmp_path) == pyproject
    # Only first: anywhere else it is a character TOML does not allow there.
    config.write_bytes(b"[backend]\n\xef\xbb\xbfname = 'memory'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_settings(config)


def test_find_config_prefers_chanlog_toml(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert find_config(tmp_path) is None
    write(tmp_path / "pyproject.toml", '[tool.chanlog]\nbackend = "memory"\n')
    assert find_config(tmp_path) == tmp_path / "pyproject.toml"
    write(tmp_path / "chanlog.toml", 'backend = "memory"\n')
    assert find_config(tmp_path) == tmp_path / "chanlog.toml"


def test_find_config_ignores_a_broken_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.chanlog\n")
    assert find_config(tmp_path) is None


def test_no_source_uses_the_current_directory(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no chanlog\.toml"):
        load_config(plugins=host)
    write(tmp_path / "chanlog.toml", 'backend = "memory"\n')
    settings = load_config(plugins=host)
    assert settings.backend == "memory"
    assert Path(settings.source).name == "chanlog.toml"


def test_reopening_a_configured_sqlite_store_continues_the_log(
    tmp_path: Path, host: PluginHost
) -> None:
    config = write(tmp_path / "chanlog.toml", '[backend]\npath = "node.db"\n')
    with open_store(config, plugins=host) as store:
        store.append_batch(EVENTS[:2])
    with open_store(config, plugins=host) as store:
        assert len(store) == 2
        assert store.projection("objective").get(EVENTS[0].streams[0]) is not None
        assert store.append(EVENTS[2]) == 2
        assert store.verify() == 3


def test_a_configured_store_snapshots_every_1000_events_by_default(host: PluginHost) -> None:
    settings = load_config({"backend": "memory"}, plugins=host)
    assert (settings.snapshot_policy, settings.snapshot_options) == ("every-n-events", {})
    with build_store(settings, plugins=host) as store:
        assert store.snapshot_policy.name == "every-n-events"
        assert store.snapshot_policy.n == 1000  # type: ignore[attr-defined]
    never = load_config({"backend": "memory", "snapshots": "never"}, plugins=host)
    assert never.snapshot_policy == "never"
