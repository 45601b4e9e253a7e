"""A name in ``CHANLOG_DISABLE_PLUGINS`` (or ``CHANLOG_LOAD_PLUGINS``) that is no installed
plugin is warned about on stderr, naming the variable, the name and the installed plugins
(ADR 0069): a typo once kept the plugin enabled without a word. It is a warning, not a
refusal, so one setting can serve machines that do not all install the same plugins."""

from __future__ import annotations

from pathlib import Path

from cli.test_console_script import chanlog

INSTALLED = "installed plugins: msgpack, nats, otel, postgres"


def test_a_disabled_name_that_is_no_plugin_is_warned_about(tmp_path: Path) -> None:
    result = chanlog("plugins", cwd=tmp_path, env={"CHANLOG_DISABLE_PLUGINS": "otle,msgpack"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "CHANLOG_DISABLE_PLUGINS names 'otle', which is no installed plugin: it disables "
        f"nothing ({INSTALLED})"
    ]
    assert "otel" in result.stdout and "msgpack" not in result.stdout


def test_a_loaded_name_that_is_no_plugin_is_warned_about(tmp_path: Path) -> None:
    result = chanlog("plugins", cwd=tmp_path, env={"CHANLOG_LOAD_PLUGINS": "nats,postgress"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "CHANLOG_LOAD_PLUGINS names 'postgress', which is no installed plugin: it loads "
        f"nothing ({INSTALLED})"
    ]


def test_names_of_installed_plugins_give_no_warning(tmp_path: Path) -> None:
    result = chanlog("plugins", cwd=tmp_path, env={"CHANLOG_DISABLE_PLUGINS": " otel , nats"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "otel" not in result.stdout and "msgpack" in result.stdout
