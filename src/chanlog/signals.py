"""The blinker signal through which the store's delivery hands out committed records.

A store's lifecycle is observed through the pluggy hooks ``chanlog_store_opened`` and
``chanlog_store_closing``; its records through this signal or
:meth:`~chanlog.EventStore.subscribe` (which connects to it).

``event_appended`` is sent once per committed event, after the commit, in offset order, with
the store as sender and the :class:`~chanlog.records.RecordedEvent` as ``record=``. It is never
sent for a refused or idempotent append. Receivers are called one by one and isolated: one
that raises is logged and does not stop the others or fail the append::

    from chanlog.signals import event_appended

    @event_appended.connect_via(store)
    def on_record(sender, record):
        ...
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["event_appended", "namespace"]

namespace = Namespace()
"""The ``chanlog.signals`` namespace."""

event_appended = namespace.signal("event-appended", doc="A record was committed to a store.")
