"""A store's first and last steps: the ``chanlog_store_opened`` and
``chanlog_store_closing`` hooks (with telemetry installed just before the first), and what
the store holds released whatever a plugin's hook does (ADR 0061)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chanlog import telemetry

if TYPE_CHECKING:
    from chanlog.appending import AppendPipeline
    from chanlog.reconstruct import StateReconstructor
    from chanlog.snapshots.taking import SnapshotTaker
    from chanlog.writing import Writer

__all__ = ["closing", "opened"]


def opened(
    store: Any,
    writer: Writer,
    pipeline: AppendPipeline,
    taker: SnapshotTaker,
    reconstructor: StateReconstructor,
    release: Callable[[], None],
) -> None:
    """The last step of opening ``store``: install its telemetry
    (:func:`chanlog.telemetry.install`), then call the ``chanlog_store_opened`` hook; when
    a plugin's hook raises (a :class:`~chanlog.errors.PluginError`), ``release`` what the
    store holds first: it never opened. (A telemetry provider that raises is no such
    failure: the store opens without its telemetry, ADR 0073.)"""
    try:
        telemetry.install(store, writer, pipeline, taker, reconstructor)
        store.plugins.notify("chanlog_store_opened", store=store)
    except BaseException:
        release()
        raise


def closing(store: Any, release: Callable[[], None]) -> None:
    """Close ``store``: call the ``chanlog_store_closing`` hook, then ``release`` what it
    holds, even when a plugin's hook raises (its :class:`~chanlog.errors.PluginError` is
    raised after)."""
    try:
        store.plugins.notify("chanlog_store_closing", store=store)
    finally:
        release()
