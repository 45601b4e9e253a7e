"""chanlog-nats: NATS JetStream for chanlog's bus (DESIGN section 10, ADR 0028).

- the ``nats-relay`` handler (:class:`NatsRelay`): a durable consumer publishing every record
  to a JetStream stream, in offset order, exactly once;
- the ``nats`` broker (:class:`NatsBroker`): live subscriptions across processes and
  machines (``[bus] broker = "nats"``);
- the ``nats`` ingest source (:class:`NatsIngest`): a JetStream durable consumer feeding a
  store, idempotently (``chanlog ingest nats --stream S --durable NAME``).
"""

from __future__ import annotations

from chanlog_nats.broker import NatsBroker
from chanlog_nats.ingest import NatsIngest
from chanlog_nats.mapping import Envelope, headers_of, msg_id, read_envelope
from chanlog_nats.relay import NatsRelay

__all__ = [
    "Envelope",
    "NatsBroker",
    "NatsIngest",
    "NatsRelay",
    "headers_of",
    "msg_id",
    "read_envelope",
]
