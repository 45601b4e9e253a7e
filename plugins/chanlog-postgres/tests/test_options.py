"""Options and connection failures: refused before anything is written, with clear errors.

None of these needs a running server: bad options fail before connecting, and the
unreachable-server case points at a port nothing listens on.
"""

from __future__ import annotations

from typing import Any

import pytest
from chanlog_postgres import PostgresBackend, drop_schema
from chanlog_postgres.connection import parse_dsn, server_keepalives

from chanlog.errors import ConfigError, StorageError
from chanlog.plugins import LazyBackendFactory
from chanlog.plugins.host import PluginHost

GOOD_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NOTHING_LISTENS = "postgresql://postgres@127.0.0.1:1/test"


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({}, "backend.dsn", "required"),
        ({"dsn": ""}, "backend.dsn", "non-empty string"),
        ({"dsn": 5432}, "backend.dsn", "non-empty string"),
        ({"dsn": "host=127.0.0.1 port"}, "backend.dsn", "not a valid connection string"),
        # libpq reads a connection string up to its first NUL: what follows would be
        # dropped without a word (a password, a port, sslmode).
        ({"dsn": "host=127.0.0.1\x00 port=1"}, "backend.dsn", "NUL"),
        ({"dsn": GOOD_DSN + "\x00?sslmode=require"}, "backend.dsn", "NUL"),
        ({"dsn": GOOD_DSN, "schema": "Chanlog"}, "backend.schema", "lower-case identifier"),
        ({"dsn": GOOD_DSN, "schema": "a;drop"}, "backend.schema", "lower-case identifier"),
        ({"dsn": GOOD_DSN, "schema": "x" * 51}, "backend.schema", "at most 50"),
        ({"dsn": GOOD_DSN, "schema": "pg_chanlog"}, "backend.schema", "reserved"),
        ({"dsn": GOOD_DSN, "schema": "information_schema"}, "backend.schema", "reserved"),
        ({"dsn": GOOD_DSN, "durability": "fsync"}, "backend.durability", "'full' or 'normal'"),
        ({"dsn": GOOD_DSN, "pool_size": 1}, "backend.pool_size", ">= 2"),
        ({"dsn": GOOD_DSN, "pool_size": True}, "backend.pool_size", ">= 2"),
        ({"dsn": GOOD_DSN, "pool_size": "4"}, "backend.pool_size", ">= 2"),
        ({"dsn": GOOD_DSN, "connect_timeout": 0}, "backend.connect_timeout", "positive"),
        ({"dsn": GOOD_DSN, "lock_timeout": -1.0}, "backend.lock_timeout", "positive"),
        ({"dsn": GOOD_DSN, "pool_timeout": "10"}, "backend.pool_timeout", "positive"),
        ({"dsn": GOOD_DSN, "path": "x.db"}, "backend.path", "unknown option 'path'"),
        ({"dsn": GOOD_DSN, "read_only": "yes"}, "backend.read_only", "true or false"),
        ({"dsn": GOOD_DSN, "create": 0}, "backend.create", "true or false"),
    ],
)
def test_bad_options_are_refused_naming_the_key(
    options: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as refused:
        PostgresBackend(**options)
    assert refused.value.key == key


def test_an_unreachable_server_is_a_storage_error_naming_host_and_port() -> None:
    with pytest.raises(StorageError, match=r"cannot connect to 127\.0\.0\.1:1/test") as failed:
        PostgresBackend(dsn=NOTHING_LISTENS, connect_timeout=2)
    assert "refused" in str(failed.value).lower()


def test_drop_schema_checks_its_arguments_before_connecting() -> None:
    with pytest.raises(ConfigError):
        drop_schema(GOOD_DSN, "Not-A-Schema")
    with pytest.raises(ConfigError):
        drop_schema("", "chanlog")
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:1"):
        drop_schema(NOTHING_LISTENS, "chanlog", connect_timeout=2)


def test_parse_dsn_adds_keepalives_unless_the_dsn_sets_them() -> None:
    dsn, server = parse_dsn("host=db.example port=6543 dbname=log user=me password=secret")
    assert "keepalives_idle=10" in dsn
    assert str(server) == "db.example:6543/log"
    assert "secret" not in str(server)
    own, _ = parse_dsn("host=db.example keepalives_idle=99")
    assert "keepalives_idle=99" in own
    assert "keepalives_idle=10" not in own


def test_the_server_gets_the_keepalives_the_client_has() -> None:
    dsn, _ = parse_dsn(GOOD_DSN)
    statement = server_keepalives(dsn)
    assert statement is not None
    assert "set_config('tcp_keepalives_idle', '10', false)" in statement
    assert server_keepalives(parse_dsn(GOOD_DSN + "?keepalives=0")[0]) is None
    # A value libpq will refuse at connect (naming it) is not spliced into SQL.
    odd, _ = parse_dsn("host=db.example keepalives_idle='1); drop'")
    assert "drop" not in (server_keepalives(odd) or "")


def test_the_backend_is_registered_through_the_chanlog_entry_point() -> None:
    host = PluginHost()
    factory = host.lookup("backends", "postgres")
    assert isinstance(factory, LazyBackendFactory)  # psycopg is imported on first use
    assert factory.load() is PostgresBackend
    assert any(
        contribution.kind == "backends" and contribution.name == "postgres"
        for contribution in host.contributions()
    )
