"""keccak256 and the hash chain.

keccak256 is Ethereum's hash (the original Keccak padding), not NIST SHA3-256, so
``hashlib.sha3_256`` would give different ids. The C extension from ``safe-pysha3`` is used
because it costs about a third of a ctypes-backed implementation on the hot path.
"""

from __future__ import annotations

import sha3

__all__ = ["GENESIS_CHAIN_HASH", "ID_SCHEME", "chain_next", "event_digest", "keccak256"]

GENESIS_CHAIN_HASH = bytes(32)
"""The chain hash "before" offset 0: 32 zero bytes."""

_keccak_256 = sha3.keccak_256


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte keccak256 digest of ``data``."""
    digest: bytes = _keccak_256(data).digest()
    return digest


def chain_next(previous: bytes, event_id: bytes) -> bytes:
    """Return ``keccak256(previous || event_id)``: the chain hash of the next record."""
    digest: bytes = _keccak_256(previous + event_id).digest()
    return digest


ID_SCHEME = b"ev1"
"""The version tag of the event-id preimage (DESIGN section 2)."""

_ID_PREFIX = ID_SCHEME + b"|"


def event_digest(event_type: str, canonical: bytes) -> bytes:
    """The raw 32-byte event id: ``keccak256(b"ev1|" + event_type + b"|" + canonical)``,
    where ``canonical`` is the event's canonical JSON. The one place the id is computed."""
    digest: bytes = _keccak_256(_ID_PREFIX + event_type.encode() + b"|" + canonical).digest()
    return digest
