"""chanlog-msgpack: store chanlog event payloads as msgpack.

Installing this distribution registers the serializer ``msgpack`` through the ``chanlog``
entry-point group; select it in chanlog.toml with ``serializer = "msgpack"``. Event ids stay
keccak256 over canonical JSON, so a log's ids and hash chain do not depend on the serializer.
"""

from __future__ import annotations

from chanlog_msgpack.serializer import MsgpackSerializer

__all__ = ["MsgpackSerializer", "__version__"]

__version__ = "0.1.0"
