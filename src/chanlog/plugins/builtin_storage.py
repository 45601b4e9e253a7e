"""Built-in plugin: the ``memory`` and ``sqlite`` backends and the ``json`` serializer.

The ``sqlite`` backend is registered as a :class:`LazyBackendFactory`: registering it must
not import :mod:`sqlite3`, so ``import chanlog``, the plugin host and programs that only
use the memory backend (or PostgreSQL) never load it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from chanlog.backends.memory import MemoryBackend
from chanlog.plugins.hookspecs import hookimpl
from chanlog.serializers import JsonSerializer

__all__ = ["LazyBackendFactory", "chanlog_register_backends", "chanlog_register_serializers"]


class LazyBackendFactory:
    """A backend factory that imports its backend class on first use.

    Calling it (or asking for its signature, which configuration does to check options)
    imports ``module`` and calls ``attribute`` with the same arguments.

    Args:
        target: ``"package.module:ClassName"`` of the backend class (or factory function).
        file_option: the option that names the file the backend keeps its log in
            (``"path"`` for SQLite), or ``None`` for a backend that keeps no file; see
            :class:`chanlog.factories.FileBackedFactory`.
    """

    def __init__(self, target: str, *, file_option: str | None = None) -> None:
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"target must be 'module:attribute', got {target!r}")
        self.target = target
        self.file_option = file_option
        self._module = module
        self._attribute = attribute
        self._factory: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        """Import and return the backend class (once; later calls reuse it)."""
        if self._factory is None:
            factory: Callable[..., Any] = getattr(
                importlib.import_module(self._module), self._attribute
            )
            self._factory = factory
        return self._factory

    def __call__(self, *args: Any, **options: Any) -> Any:
        """Open the backend: ``BackendClass(*args, **options)``."""
        return self.load()(*args, **options)

    @property
    def __signature__(self) -> inspect.Signature:
        """The backend class's own signature, so option checks and the ``read_only`` probe
        of :func:`chanlog.config.build_store` see the real parameters."""
        return inspect.signature(self.load())

    def __repr__(self) -> str:
        return f"LazyBackendFactory({self.target!r}, file_option={self.file_option!r})"


@hookimpl
def chanlog_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``memory`` (imported anyway: it is the store's default) and ``sqlite``."""
    register("memory", MemoryBackend)
    register(
        "sqlite", LazyBackendFactory("chanlog.backends.sqlite:SqliteBackend", file_option="path")
    )


@hookimpl
def chanlog_register_serializers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register ``json``, the canonical serializer."""
    register("json", JsonSerializer)
