"""A handler's or an ingest source's factory that raises: the error names the configuration
table, the part and the plugin that registered it, as the configuration does for a backend,
a snapshot policy or a serializer (ADR 0061), and a ``TypeError`` raised inside a factory is
the plugin's bug, not options the configuration got wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.bus.settings import BusSettings, ConsumerSettings, IngestSettings
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.worker import Worker
from chanlog.errors import ConfigError, PluginError
from chanlog.plugins.host import PluginHost


def _broken(error: Exception) -> Callable[..., Any]:
    def factory(**options: Any) -> Any:
        raise error

    return factory


class _Broken:
    """A plugin whose handler and ingest source factories raise ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @chanlog.hookimpl
    def chanlog_register_handlers(
        self, register: Callable[[str, Callable[..., Any]], None]
    ) -> None:
        register("broken", _broken(self.error))

    @chanlog.hookimpl
    def chanlog_register_ingest_sources(
        self, register: Callable[[str, Callable[..., Any]], None]
    ) -> None:
        register("broken-source", _broken(self.error))


def _worker(error: Exception, settings: BusSettings) -> Worker:
    host = PluginHost()
    host.register(_Broken(error), "breaker")
    store = chanlog.EventStore(MemoryBackend(), plugins=host)
    try:
        return Worker(store, store.bus, settings, host.handlers, host.ingest_sources)
    finally:
        store.close()


CONSUMER = BusSettings(
    consumers=(ConsumerSettings(ConsumerSpec("audit"), "broken"),), source="node.toml"
)
INGEST = BusSettings(ingest=(IngestSettings("replica", "broken-source", {}),), source=None)


@pytest.mark.parametrize(
    ("settings", "where", "part"),
    [
        (CONSUMER, "node.toml: [consumers.audit]", "handler 'broken'"),
        (INGEST, "[ingest.replica]", "ingest source 'broken-source'"),
    ],
)
@pytest.mark.parametrize("error", [RuntimeError("boom"), TypeError("a bug inside")])
def test_a_factory_that_raises_is_a_plugin_error_naming_table_part_and_plugin(
    settings: BusSettings, where: str, part: str, error: Exception
) -> None:
    with pytest.raises(PluginError) as raised:
        _worker(error, settings)
    message = str(raised.value)
    assert message.startswith(f"{where} {part} (registered by plugin 'breaker'")
    assert f"its factory raised {error!r}" in message
    assert raised.value.plugin == "breaker"


def test_a_factory_s_own_configuration_error_is_kept_under_its_table() -> None:
    with pytest.raises(ConfigError) as raised:
        _worker(ConfigError("level: must be 1..3", key="level"), CONSUMER)
    assert str(raised.value) == "node.toml: [consumers.audit] level: must be 1..3"
    assert raised.value.source == "node.toml"
    assert raised.value.key == "consumers.audit.level"
