"""No backend is special to the configuration: a third-party backend that declares a
``file_option`` gets what SQLite gets (relative paths, a default file, read-only opening that
creates nothing), and ``read_only`` reaches any factory that takes it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

import chanlog
from chanlog import ConfigError, NotFound, PluginHost, StorageError, hookimpl
from chanlog.backends.memory import MemoryBackend
from chanlog.cli.demo_events import demo_events
from chanlog.config import (
    DEFAULT_LOG_FILE,
    FileBackedFactory,
    accepts_keyword,
    file_backend,
    file_option_of,
    load_config,
)
from chanlog.plugins.builtin_storage import LazyBackendFactory


class FileLog(MemoryBackend):
    """A third-party backend that keeps its log in one file. Records stay in memory; the
    file is only created (when not read-only), which is all these tests look at."""

    name = "filelog"
    file_option = "path"
    opened: ClassVar[list[dict[str, Any]]] = []

    def __init__(
        self, path: str, *, level: int = 1, read_only: bool = False, **unknown: Any
    ) -> None:
        super().__init__()
        if unknown:  # checked first, as the built-in backends do
            raise ConfigError(f"filelog: unknown option {sorted(unknown)[0]!r}")
        if read_only and not Path(path).exists():
            raise StorageError(f"filelog: {path} does not exist")
        if not read_only:
            Path(path).touch()
        FileLog.opened.append({"path": path, "level": level, "read_only": read_only})


class OldFileLog(MemoryBackend):
    """A file-backed backend that predates read-only opening: it refuses unknown options,
    as the SQLite backend did before it took ``read_only``."""

    name = "oldfilelog"
    file_option = "file"

    def __init__(self, file: str, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise ConfigError(f"oldfilelog: unknown option {sorted(unknown)[0]!r}")
        Path(file).touch()


class CarelessFileLog(MemoryBackend):
    """A file-backed backend that takes ``read_only`` but opens a missing file anyway."""

    name = "carelessfilelog"
    file_option = "path"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        super().__init__()


class RemoteLog(MemoryBackend):
    """A backend without a file that can open read-only (a server, like PostgreSQL)."""

    name = "remotelog"
    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, *, url: str = "", read_only: bool = False) -> None:
        super().__init__()
        RemoteLog.calls.append({"url": url, "read_only": read_only})


class FileBackends:
    @hookimpl
    def chanlog_register_backends(
        self, register: Callable[[str, Callable[..., Any]], None]
    ) -> None:
        register("filelog", FileLog)
        register("oldfilelog", OldFileLog)
        register("remotelog", RemoteLog)
        register("carelessfilelog", CarelessFileLog)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(load_entry_points=False)
    host.register(FileBackends(), name="file-backends")
    FileLog.opened.clear()
    RemoteLog.calls.clear()
    return host


def test_a_declared_file_option_is_resolved_against_the_config_file(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = tmp_path / "node"
    node.mkdir()
    config = node / "chanlog.toml"
    config.write_text('[backend]\nname = "filelog"\npath = "log.bin"\nlevel = 3\n')
    monkeypatch.chdir(tmp_path)
    settings = load_config(config, plugins=host)
    assert settings.backend_options == {"path": str(node.resolve() / "log.bin"), "level": 3}
    config.write_text('[backend]\nname = "oldfilelog"\n')
    settings = load_config(config, plugins=host)
    assert settings.backend_options == {"file": str(node.resolve() / DEFAULT_LOG_FILE)}


def test_an_undeclared_backend_gets_no_file_treatment(tmp_path: Path, host: PluginHost) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text('[backend]\nname = "remotelog"\nurl = "relative/x"\n')
    assert load_config(config, plugins=host).backend_options == {"url": "relative/x"}


def test_file_option_of_reads_the_declaration() -> None:
    assert file_option_of(FileLog) == "path"
    assert file_option_of(OldFileLog) == "file"
    assert file_option_of(RemoteLog) is None
    assert file_option_of(MemoryBackend) is None
    sqlite = PluginHost(load_entry_points=False).backends["sqlite"]
    assert isinstance(sqlite, FileBackedFactory)
    assert file_option_of(sqlite) == "path"
    assert file_option_of(LazyBackendFactory("x.y:Z")) is None


def test_file_backend_builds_the_setting(tmp_path: Path, host: PluginHost) -> None:
    assert file_backend(tmp_path / "a", name="oldfilelog", plugins=host) == {
        "name": "oldfilelog",
        "file": str(tmp_path / "a"),
    }
    assert file_backend("x.db", plugins=host) == {"name": "sqlite", "path": "x.db"}
    with pytest.raises(
        ConfigError, match=r"keeps no file \(allowed: carelessfilelog, filelog, oldf"
    ):
        file_backend("x", name="remotelog", plugins=host)
    with pytest.raises(ConfigError, match="no such backend"):
        file_backend("x", name="nope", plugins=host)


def test_read_only_reaches_a_factory_that_takes_it(tmp_path: Path, host: PluginHost) -> None:
    log = tmp_path / "log.bin"
    chanlog.open(backend={"name": "filelog", "path": str(log)}, plugins=host).close()
    with chanlog.open(
        backend={"name": "filelog", "path": str(log)}, plugins=host, read_only=True
    ) as store:
        assert isinstance(store.backend, FileLog)
    assert [call["read_only"] for call in FileLog.opened] == [False, True]
    with chanlog.open(backend="remotelog", plugins=host, read_only=True):
        pass
    assert RemoteLog.calls == [{"url": "", "read_only": True}]


def test_read_only_is_not_passed_to_a_factory_without_it(tmp_path: Path, host: PluginHost) -> None:
    log = tmp_path / "old.bin"
    chanlog.open(backend={"name": "oldfilelog", "file": str(log)}, plugins=host).close()
    # OldFileLog would refuse an unknown read_only option.
    chanlog.open(
        backend={"name": "oldfilelog", "file": str(log)}, plugins=host, read_only=True
    ).close()
    assert accepts_keyword(FileLog, "read_only")
    assert not accepts_keyword(OldFileLog, "read_only")
    assert not accepts_keyword(len, "read_only")


@pytest.mark.parametrize(
    ("name", "option"),
    [("filelog", "path"), ("oldfilelog", "file"), ("carelessfilelog", "path")],
)
def test_read_only_refuses_a_missing_file_and_creates_nothing(
    tmp_path: Path, host: PluginHost, name: str, option: str
) -> None:
    missing = tmp_path / "typo.bin"
    with pytest.raises(NotFound) as info:
        chanlog.open(backend={"name": name, option: str(missing)}, plugins=host, read_only=True)
    assert str(missing) in str(info.value) and "nothing was created" in str(info.value)
    assert not missing.exists()


def test_a_bad_option_is_reported_before_a_missing_file(tmp_path: Path, host: PluginHost) -> None:
    missing = tmp_path / "typo.bin"
    backend = {"name": "filelog", "path": str(missing), "levle": 2}
    with pytest.raises(ConfigError, match="levle"):
        chanlog.open(backend=backend, plugins=host, read_only=True)
    assert not missing.exists()


def test_the_builtin_sqlite_backend_opened_read_only_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "chanlgo.db"
    with pytest.raises(NotFound, match=r"chanlgo\.db"):
        chanlog.open(backend={"name": "sqlite", "path": str(missing)}, read_only=True)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "chanlog.db"
    with chanlog.open(backend={"name": "sqlite", "path": str(existing)}) as store:
        store.append(demo_events()[0])
    with chanlog.open(
        backend={"name": "sqlite", "path": str(existing)}, read_only=True, projections=[]
    ) as store:
        assert len(store) == 1


def test_registering_sqlite_does_not_import_it() -> None:
    code = (
        "import sys\n"
        "from chanlog.plugins import PluginHost\n"
        "host = PluginHost(load_entry_points=False)\n"
        "assert 'sqlite' in host.backends\n"
        "assert 'sqlite3' not in sys.modules, 'registering loaded sqlite3'\n"
        "host.backends['sqlite']\n"
        "import inspect; inspect.signature(host.backends['sqlite'])\n"
        "assert 'sqlite3' in sys.modules, 'the signature comes from the real class'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_lazy_factory_needs_module_and_attribute() -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        LazyBackendFactory("chanlog.backends.sqlite")
    factory = LazyBackendFactory("chanlog.backends.memory:MemoryBackend")
    assert isinstance(factory(), MemoryBackend)
    assert factory.load() is MemoryBackend
    assert "chanlog.backends.memory:MemoryBackend" in repr(factory)


# -- create=False: write to an existing log, never create one (issue 18 item 1) -----------


@pytest.mark.parametrize("name", ["filelog", "oldfilelog", "carelessfilelog"])
def test_create_false_refuses_a_missing_file_of_any_file_backend(
    tmp_path: Path, host: PluginHost, name: str
) -> None:
    missing = tmp_path / "typo.bin"
    option = file_option_of(host.backends[name])
    assert option is not None
    with pytest.raises(NotFound) as info:
        chanlog.open(backend={"name": name, option: str(missing)}, plugins=host, create=False)
    assert str(missing) in str(info.value)
    assert "opened with create=False, so nothing was created" in str(info.value)
    assert not missing.exists()


def test_create_false_opens_the_sqlite_log_for_writing_only_when_it_exists(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "chanlgo.db"
    with pytest.raises(NotFound, match=r"chanlgo\.db.*create=False"):
        chanlog.open(backend={"name": "sqlite", "path": str(missing)}, create=False)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "chanlog.db"
    chanlog.open(backend={"name": "sqlite", "path": str(existing)}).close()
    with chanlog.open(backend={"name": "sqlite", "path": str(existing)}, create=False) as store:
        assert store.append(demo_events()[0]) == 0


def test_create_false_in_the_config_file_is_the_same_refusal(tmp_path: Path) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text('[backend]\nname = "sqlite"\npath = "chanlgo.db"\ncreate = false\n')
    with pytest.raises(NotFound, match=r"chanlgo\.db.*create=False"):
        chanlog.open(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chanlog.toml"]


def test_create_false_with_backends_that_keep_no_file(host: PluginHost) -> None:
    with chanlog.open(backend={"name": "memory"}, create=False) as store:
        assert len(store) == 0  # a memory log always exists: nothing to refuse
    with pytest.raises(ConfigError, match="create"):
        # remotelog takes no create option: refusing a missing log is up to the backend.
        chanlog.open(backend={"name": "remotelog", "create": False}, plugins=host)
