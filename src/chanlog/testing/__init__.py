"""Test support for chanlog and for packages that extend it.

The backend conformance suite
-----------------------------

:class:`BackendConformance` is a pytest test class holding everything a storage backend must
do (DESIGN section 6): dense offsets, atomic batches (nothing written when any event is
refused), idempotent re-appends, ``expected_version``, reads by range and by stream, lookup by
event id, stream versions, snapshots, ten threads appending at once, catch-up subscriptions,
the hash chain and ``verify()``, reopening a durable log, several handles on a shared log, and
idempotent ``close()``. The built-in ``memory`` and ``sqlite`` backends run it, and so must
every backend plugin. Subclass it in a test module, name the subclass ``Test...`` so pytest
collects it, and override one fixture, ``open_backend``: it returns a callable that opens the
log under test. Each test starts with an empty log, and every call made within one test must
open that same log (a new handle on it), which is how the reopen and shared-log tests work::

    import pytest
    from chanlog.testing import BackendConformance, OpenBackend
    from chanlog_postgres import PostgresBackend

    class TestPostgresBackend(BackendConformance):
        @pytest.fixture
        def open_backend(self, fresh_schema: str) -> OpenBackend:
            return lambda: PostgresBackend(dsn=DSN, schema=fresh_schema)

A backend whose log dies with its handle (like ``memory``) sets ``durable = False``, which
skips the reopen test; tests needing two handles on one log run only when the backend
declares ``shared = True``. Each optional capability of :mod:`chanlog.backends.capabilities`
has its own cases, which run when ``isinstance`` says the backend (or its write transaction)
implements the protocol and are skipped, saying so, otherwise. A backend whose factory takes
``read_only=True`` also overrides ``open_read_only`` (a callable opening the same log
read-only), which runs the read-only cases::

    @pytest.fixture
    def open_read_only(self, fresh_schema: str) -> OpenBackend:
        return lambda: PostgresBackend(dsn=DSN, schema=fresh_schema, read_only=True)

A read-only open before the test's first writable one must be refused (it must not create
the log); a backend whose ``open_backend`` prepares the log's storage itself sets
``opening_creates_the_log = False``. The suite closes every handle it opened. It needs
``pytest`` (a test dependency, not a runtime one of chanlog). The case classes it gathers
are in :mod:`chanlog.testing.conformance`, and can be subclassed one at a time.

Helpers
-------

:mod:`chanlog.testing.events` builds deterministic, valid events and the records the store
would write for them; :mod:`chanlog.testing.plugins` provides a projection that refuses one
known event, to prove a refused batch leaves nothing behind; :class:`FlakyBackend` (in
:mod:`chanlog.testing.flaky`) is a memory backend whose next reads or write transactions
fail with :class:`~chanlog.errors.StorageError`, as a database restarting would, to test
the retry paths of consumers, handlers and plugins; :class:`ConsumerWriteFaults` fails the
writes a backend (any that keeps consumers) makes to its durable consumers outside a write
transaction: leases, plain position commits, parks, last errors.
"""

from __future__ import annotations

from chanlog.testing.conformance import BackendConformance, OpenBackend
from chanlog.testing.events import (
    message_sent,
    refused_event,
    sample_events,
    stored_records,
)
from chanlog.testing.flaky import ConsumerWriteFaults, FlakyBackend
from chanlog.testing.plugins import REFUSING_PROJECTION, RefusingProjection, refusing_host

__all__ = [
    "REFUSING_PROJECTION",
    "BackendConformance",
    "ConsumerWriteFaults",
    "FlakyBackend",
    "OpenBackend",
    "RefusingProjection",
    "message_sent",
    "refused_event",
    "refusing_host",
    "sample_events",
    "stored_records",
]
