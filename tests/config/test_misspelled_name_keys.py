"""A table whose naming key (``handler``, ``source``, ``policy``) is misspelled: the error
said only that the key is required, and never named the misspelled key the table has;
now it lists the table's keys, so the typo is on the line that refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

import chanlog
from chanlog.errors import ConfigError


def _refusal(tmp_path: Path, table: str) -> ConfigError:
    """The error of loading a configuration file holding ``table``."""
    config = tmp_path / "node.toml"
    config.write_text(table)
    with pytest.raises(ConfigError) as refused:
        chanlog.load_config(config)
    return refused.value


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        (
            '[consumers.audit]\nhandlr = "jsonl"\npath = "audit.jsonl"\n',
            "consumers.audit.handler",
            "consumers.audit.handler: is required (allowed: channel-read-model, jsonl, "
            "nats-relay); the table's keys are handlr, path: is one of them a misspelling "
            "of handler?",
        ),
        (
            '[ingest.peer]\nsorce = "nats"\n',
            "ingest.peer.source",
            "ingest.peer.source: is required (allowed: nats); the table's keys are sorce: is "
            "one of them a misspelling of source?",
        ),
        (
            '[snapshots]\npolcy = "never"\n',
            "snapshots.policy",
            "snapshots.policy is required (allowed: every-n-events, never); the table's keys "
            "are polcy: is one of them a misspelling of policy?",
        ),
    ],
)
def test_a_missing_naming_key_lists_the_keys_the_table_has(
    tmp_path: Path, table: str, key: str, message: str
) -> None:
    refused = _refusal(tmp_path, table)
    assert str(refused) == f"{tmp_path / 'node.toml'}: {message}"
    assert refused.key == key


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[consumers.audit]\n",
            "consumers.audit.handler: is required (allowed: channel-read-model, jsonl, nats-relay)",
        ),
        ("[snapshots]\n", "snapshots.policy is required (allowed: every-n-events, never)"),
    ],
)
def test_an_empty_table_says_only_what_is_required(
    tmp_path: Path, table: str, message: str
) -> None:
    assert str(_refusal(tmp_path, table)) == f"{tmp_path / 'node.toml'}: {message}"


def test_a_misspelled_option_of_the_snapshot_policy_lists_its_options(tmp_path: Path) -> None:
    """It said only "snapshot policy 'every-n-events' has no option 'nn'"."""
    config = tmp_path / "node.toml"
    config.write_text('[snapshots]\npolicy = "every-n-events"\nnn = 3\n')
    with pytest.raises(ConfigError) as refused:
        chanlog.load_config(config)
    assert str(refused.value) == (
        f"{config}: snapshots.nn = 3: unknown key (allowed: incremental, keep, n)"
    )
    assert refused.value.key == "snapshots.nn"
