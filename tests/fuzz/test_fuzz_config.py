"""Fuzz the configuration loader: random settings dicts and random TOML text (written to a
file), through ``chanlog.load_config`` and ``chanlog.open`` (memory backend, so nothing is
created on disk). Every mistake must be a ConfigError (or another chanlog error)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chanlog
from chanlog.config import TOP_LEVEL_KEYS
from chanlog.errors import ConfigError
from chanlog.plugins import default_host
from fuzz.fuzz_helpers import any_text, damaged_bytes, json_values, only_chanlog_errors

HOST = default_host()
FIXTURE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

names = st.sampled_from(
    sorted({*HOST.backends, *HOST.serializers, *HOST.projections, *HOST.snapshot_policies})
)
option_keys = st.sampled_from(
    ["name", "policy", "path", "n", "durability", "timeout", "poll_interval", "dsn", "schema"]
) | st.text(max_size=8)
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)
# Mostly what TOML can hold (so most documents parse and reach the validation), sometimes
# anything (lone surrogates, nulls, nested objects).
values = names | plain_values | plain_values | json_values | any_text
tables = st.dictionaries(option_keys, values, max_size=4)
settings_dicts = st.dictionaries(
    st.sampled_from(TOP_LEVEL_KEYS) | st.text(max_size=10),
    values | tables | st.lists(names | values, max_size=4),
    max_size=6,
)


def _memory_only(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its backend made the memory backend (keeping any other options, which
    the memory backend refuses)."""
    backend = raw.get("backend")
    if isinstance(backend, dict):
        return {**raw, "backend": {**backend, "name": "memory"}}
    return {**raw, "backend": "memory"}


@settings(max_examples=150, suppress_health_check=FIXTURE)
@given(raw=settings_dicts)
def test_load_config_random_dicts(raw: dict[str, Any]) -> None:
    with only_chanlog_errors():
        chanlog.load_config(raw)
    with only_chanlog_errors():
        chanlog.load_config(**{str(key): value for key, value in raw.items()})


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE)
@given(raw=settings_dicts)
def test_open_random_memory_settings(raw: dict[str, Any]) -> None:
    with only_chanlog_errors():
        chanlog.open(_memory_only(raw)).close()


# -- TOML text ---------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _toml(key)


def _toml(value: Any) -> str:
    """``value`` as a TOML value (strings escaped the JSON way, which TOML reads; a lone
    surrogate becomes an escape TOML refuses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # nan, inf and -inf are TOML too
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: as an escape, which TOML refuses
            return json.dumps(value)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value if item is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_key(k)} = {_toml(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    return '""'


def toml_text(raw: dict[str, Any]) -> str:
    """A TOML document of ``raw``: scalars first, then each table as a ``[section]``."""
    lines = [f"{_key(k)} = {_toml(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for key, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{_key(key)}]")
            lines.extend(f"{_key(k)} = {_toml(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


VALID = (
    'serializer = "json"\ncheckpoint_every = 32\nprojections = ["objective", "channel"]\n'
    '[backend]\nname = "sqlite"\npath = "chanlog.db"\ndurability = "full"\n'
    '[snapshots]\npolicy = "every-n-events"\nn = 1000\n'
)


@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURE)
@given(
    text=st.builds(toml_text, settings_dicts)
    | damaged_bytes(VALID.encode()).map(lambda b: b.decode("utf-8", "replace"))
    | st.text(max_size=200)
)
def test_load_config_random_toml_files(tmp_path: Path, text: str) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text(text, encoding="utf-8")
    with only_chanlog_errors():
        chanlog.load_config(config)
    # The same file opened, with the backend overridden by the memory backend.
    with only_chanlog_errors():
        chanlog.open(config, backend="memory").close()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.chanlog]\n" + text, encoding="utf-8")
    with only_chanlog_errors():
        chanlog.load_config(pyproject)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(data=damaged_bytes(VALID.encode()) | st.binary(max_size=200))
def test_load_config_random_bytes_files(tmp_path: Path, data: bytes) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_bytes(data)
    with only_chanlog_errors():
        chanlog.load_config(config)


def test_a_config_path_with_a_nul_byte() -> None:
    """Found by this suite: ``read_settings`` lets ``open()``'s ValueError out."""
    with pytest.raises(ConfigError, match="chanlog"):
        chanlog.load_config("chanlog\x00.toml")
