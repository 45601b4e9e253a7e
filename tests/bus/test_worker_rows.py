"""``chanlog run``'s table says who runs a consumer: a runner whose lease another runner
took (it was paused past its lease, say) while its thread is still inside a handler is not
shown as running."""

from __future__ import annotations

import threading

import chanlog
from bus.conftest import until
from chanlog.bus.settings import BusSettings, ConsumerSettings
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.worker import Worker
from chanlog.records import RecordedEvent

OTHER = "elsewhere:4242:feedbeef"


class Blocked:
    """Holds the first record until ``go`` is set, as a handler waiting on something away."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

    def __call__(self, record: RecordedEvent) -> None:
        self.inside.set()
        self.go.wait(30)


def test_a_runner_that_lost_its_lease_inside_a_handler_is_shown_waiting_for_it(
    store: chanlog.EventStore,
) -> None:
    handler = Blocked()
    spec = ConsumerSpec("c", lease_ttl=0.3)
    settings = BusSettings(consumers=(ConsumerSettings(spec, "blocked"),))
    worker = Worker(store, store.bus, settings, {"blocked": lambda: handler}, {})
    worker.start()
    try:
        assert handler.inside.wait(20)
        [row] = worker.rows()
        assert (row.state, row.holder) == ("running", None)
        runner = worker.runners["c"]
        keeper = store.backend
        keeper.release_lease("c", runner.holder)  # type: ignore[attr-defined]
        keeper.acquire_lease("c", OTHER, 60)  # type: ignore[attr-defined]
        # The runner's heartbeat finds the lease taken; its thread is still in the handler.
        until(lambda: worker.rows()[0].state != "running", seconds=5)
        [row] = worker.rows()
        assert (row.state, row.holder) == ("waiting", OTHER)
        assert not runner.started
    finally:
        handler.go.set()
        worker.stop()
        worker.close()
