"""The built-in durable-consumer handlers' factories (registered by
:mod:`chanlog.plugins.builtin_bus`). Each imports its handler when it is built, so loading
the plugin costs nothing; each declares its required options, so that a configuration
missing one is refused when it is read (``chanlog.bus.settings``)."""

from __future__ import annotations

from typing import Any

__all__ = ["channel_read_model", "jsonl_tap"]


def jsonl_tap(*, path: Any, **options: Any) -> Any:
    """``jsonl``: an audit tap writing every record it is handed as one JSON line
    (options: ``path``, ``fsync``). See :class:`chanlog.bus.jsonl_tap.JsonlTap`."""
    from chanlog.bus.jsonl_tap import JsonlTap

    return JsonlTap(path=path, **options)


def channel_read_model(*, path: Any, **options: Any) -> Any:
    """``channel-read-model``: the latest supported state of every channel in a SQLite
    table, each record's effect exactly once (options: ``path``). See
    :class:`chanlog.bus.read_model.ChannelReadModel`."""
    from chanlog.bus.read_model import ChannelReadModel

    return ChannelReadModel(path=path, **options)


jsonl_tap.path_options = ("path",)  # type: ignore[attr-defined]
channel_read_model.path_options = ("path",)  # type: ignore[attr-defined]
# Every option each takes, so that a typo is refused when the configuration is read, by
# every command and before a log is opened, not only once `chanlog run` builds the handler.
jsonl_tap.accepted_options = ("path", "fsync")  # type: ignore[attr-defined]
channel_read_model.accepted_options = ("path",)  # type: ignore[attr-defined]
