"""keccak256, the event id digest and the hash chain.

keccak256 is Ethereum's hash (the original Keccak padding), not NIST SHA3-256, so
``hashlib.sha3_256`` would give different ids. The C extension from ``safe-pysha3`` is used
because it costs about a third of a ctypes-backed implementation on the hot path.

The event id formula lives here and nowhere else: :func:`event_digest` is what the codec and
``EventStore.verify`` call, and :func:`event_id_hasher` is the same formula cut after the
type's prefix, which the generated append-path encoders bind once per event class.
"""

from __future__ import annotations

from typing import Any

import sha3

__all__ = [
    "GENESIS_CHAIN_HASH",
    "ID_SCHEME",
    "chain_next",
    "event_digest",
    "event_id_hasher",
    "keccak256",
]

GENESIS_CHAIN_HASH = bytes(32)
"""The chain hash "before" offset 0: 32 zero bytes."""

ID_SCHEME = b"ev1"
"""The tag in front of every event id's hashed input: ``b"ev1|" + event_type + b"|" +
canonical JSON``. It names the id scheme (compatible with the original Zig implementation's
golden vectors), so a future scheme can never produce the id of an old event; changing it
changes every event id."""

_keccak_256 = sha3.keccak_256
_ID_PREFIX = ID_SCHEME + b"|"

# b"ev1|<type>|" per event type. Building it costs more than the dict lookup, on every id; the
# bound keeps a log full of junk type names (verify reads them from disk) from growing it.
_type_prefixes: dict[str, bytes] = {}
_MAX_TYPE_PREFIXES = 1024


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte keccak256 digest of ``data``."""
    digest: bytes = _keccak_256(data).digest()
    return digest


def event_digest(event_type: str, canonical: bytes) -> bytes:
    """The raw 32-byte event id: ``keccak256(b"ev1|" + event_type + b"|" + canonical)``.

    ``event_type`` is the kebab-case wire name (UTF-8 encoded), ``canonical`` the event's
    canonical JSON bytes. The event id as a string is ``"0x" + event_digest(...).hex()``.

    Raises:
        UnicodeEncodeError: ``event_type`` is not valid Unicode text (a lone surrogate).
    """
    try:
        prefix = _type_prefixes[event_type]  # a subscript is cheaper than .get() here
    except KeyError:
        prefix = _id_prefix(event_type)
        if len(_type_prefixes) < _MAX_TYPE_PREFIXES:
            _type_prefixes[event_type] = prefix
    digest: bytes = _keccak_256(prefix + canonical).digest()
    return digest


def event_id_hasher(event_type: str) -> Any:
    """The keccak256 state after ``event_type``'s id prefix (``b"ev1|" + event_type +
    b"|"``): ``hasher.copy()``, then ``update(canonical)`` and ``digest()`` on the copy, is
    :func:`event_digest` of ``(event_type, canonical)``.

    A generated encoder binds one per event class, so computing an id on the append path
    costs three C calls and no Python frame. The returned state must never be updated
    itself, only copied.

    Raises:
        UnicodeEncodeError: ``event_type`` is not valid Unicode text (a lone surrogate).
    """
    return _keccak_256(_id_prefix(event_type))


def _id_prefix(event_type: str) -> bytes:
    return _ID_PREFIX + event_type.encode() + b"|"


def chain_next(previous: bytes, event_id: bytes) -> bytes:
    """Return ``keccak256(previous || event_id)``: the chain hash of the next record."""
    digest: bytes = _keccak_256(previous + event_id).digest()
    return digest
