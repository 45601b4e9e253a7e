"""The text a log holds is stored as it was appended (and hashed) only in a UTF-8 database
read over a UTF-8 session (ADR 0071): a database of another encoding is refused when a
handle opens it, before anything is created, and every session speaks UTF-8 whatever the
environment, the database or the role would have it speak."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from chanlog_postgres import PostgresBackend
from psycopg.conninfo import make_conninfo

from chanlog.errors import StorageError
from chanlog.store import EventStore
from chanlog.testing.events import sample_events
from chanlog.testing.plugins import EntityNoted, refusing_host

pytestmark = pytest.mark.postgres

# Latin-1, Greek, CJK and an emoji (outside the BMP): only the first survives LATIN1.
TEXTS = ("café", "Ωmega", "日本語", "tip 🎉")


@pytest.fixture
def new_database(
    admin: psycopg.Connection[Any], postgres_dsn: str
) -> Iterator[Callable[[str], tuple[str, str]]]:
    """Makes databases of a given server encoding (name, and a DSN naming it); every one is
    dropped when the test ends."""
    made: list[str] = []

    def make(encoding: str) -> tuple[str, str]:
        name = f"chanlog_refusals_{uuid.uuid4().hex[:12]}"
        admin.execute(
            f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
        made.append(name)
        return name, make_conninfo(postgres_dsn, dbname=name)

    yield make
    for name in made:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _schemas(dsn: str) -> list[str]:
    with psycopg.connect(dsn, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
            " AND nspname NOT IN ('public', 'information_schema')"
        ).fetchall()
    return [str(row[0]) for row in rows]


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII"])
@pytest.mark.parametrize("read_only", [False, True])
def test_a_database_not_in_utf8_is_refused_when_a_handle_opens_it(
    new_database: Callable[[str], tuple[str, str]], encoding: str, read_only: bool
) -> None:
    name, dsn = new_database(encoding)
    with pytest.raises(StorageError) as error:
        PostgresBackend(dsn=dsn, schema="chanlog", read_only=read_only)
    assert str(error.value) == (
        f"postgres backend: database {name!r} has server encoding {encoding}, and chanlog "
        "needs UTF8 (in another encoding the text an event holds is refused, or stored other "
        "than it was appended): create the database with ENCODING 'UTF8' (TEMPLATE template0) "
        "and point the dsn at it; move a log already there with pg_dump --schema"
    )
    assert _schemas(dsn) == []


def _dsn_speaking_latin1(how: str, dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A DSN whose sessions, left alone, would speak LATIN1 (``how`` says which setting)."""
    if how == "environment":
        monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    elif how == "database":
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            name = connection.info.dbname
            connection.execute(f"ALTER DATABASE {name} SET client_encoding = 'LATIN1'")
    elif how == "dsn":
        return make_conninfo(dsn, client_encoding="LATIN1")
    else:
        return make_conninfo(dsn, options="-c client_encoding=LATIN1")
    return dsn


@pytest.mark.parametrize("how", ["environment", "database", "dsn", "options"])
def test_any_text_is_stored_as_appended_whatever_client_encoding_the_session_would_default_to(
    new_database: Callable[[str], tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    _, utf8_dsn = new_database("UTF8")
    dsn = _dsn_speaking_latin1(how, utf8_dsn, monkeypatch)
    notes = [EntityNoted(entity=text, note=text * 2) for text in TEXTS]
    with EventStore(
        PostgresBackend(dsn=dsn, schema="chanlog"), plugins=refusing_host(), projections=[]
    ) as store:
        assert store.append_batch(sample_events(2)) == [0, 1]
        assert store.append_batch(notes) == [2, 3, 4, 5]
        assert store.verify() == 6
        assert [next(store.read_stream(text)).event for text in TEXTS] == notes
    monkeypatch.delenv("PGCLIENTENCODING", raising=False)
    with psycopg.connect(utf8_dsn, client_encoding="UTF8", connect_timeout=5) as connection:
        stored = connection.execute(
            "SELECT stream FROM chanlog.stream_versions ORDER BY stream"
        ).fetchall()
    assert sorted(text.lower() for text in TEXTS) == sorted(  # the store lower-cases ids
        str(row[0]) for row in stored if not str(row[0]).startswith("0x")
    )
