"""Storage backends: the protocol every backend implements, and the built-in ones."""

from __future__ import annotations

from chanlog.backends.base import Backend, BackendFactory, WriteTransaction
from chanlog.backends.memory import MemoryBackend

__all__ = ["Backend", "BackendFactory", "MemoryBackend", "WriteTransaction"]
