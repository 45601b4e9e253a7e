"""The bus (DESIGN section 10): every committed record is a message with a subject; live
subscribers get them through a broker, durable consumers read them from the log with a
stored position, retries and parked records.

- :mod:`chanlog.bus.subjects`: subjects and patterns;
- :mod:`chanlog.bus.brokers`: the :class:`Broker` protocol and the ``embedded`` broker;
- :mod:`chanlog.bus.handlers`: what a handler is, and its optional protocols;
- :mod:`chanlog.bus.spec`, :mod:`chanlog.bus.runner`: a consumer and its runner;
- :mod:`chanlog.bus.admin`: listing, resetting, replaying and dropping without running;
- :mod:`chanlog.bus.facade`: :class:`Bus`, a store's face on the bus (``store.bus``).
"""

from __future__ import annotations

from chanlog.bus.admin import ConsumerAdmin, ConsumerInfo
from chanlog.bus.brokers import Broker, BusContext, EmbeddedBroker, LiveReceiver
from chanlog.bus.facade import Bus, ConsumerMover
from chanlog.bus.handlers import (
    BindsToStore,
    ClosesHandler,
    Handler,
    Interruptible,
    ReplaysBelowPosition,
    ReportsFailure,
    SettlesLater,
    TracksPosition,
)
from chanlog.bus.progress import RunnerStats
from chanlog.bus.runner import ConsumerRunner
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.subjects import SubjectFilter, SubjectPattern, subject_of

__all__ = [
    "BindsToStore",
    "Broker",
    "Bus",
    "BusContext",
    "ClosesHandler",
    "ConsumerAdmin",
    "ConsumerInfo",
    "ConsumerMover",
    "ConsumerRunner",
    "ConsumerSpec",
    "EmbeddedBroker",
    "Handler",
    "Interruptible",
    "LiveReceiver",
    "ReplaysBelowPosition",
    "ReportsFailure",
    "RunnerStats",
    "SettlesLater",
    "SubjectFilter",
    "SubjectPattern",
    "TracksPosition",
    "subject_of",
]
