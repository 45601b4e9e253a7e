"""A consumer's numeric ``start`` is where it begins when it is created; once it exists it
resumes from its stored position. A log that lost records (a backup restored, ADR 0043) can
end before an existing consumer's ``start``: its runner must still resume from its stored
position, handing over every record, the ones written later at the lost offsets included,
rather than refuse to start until the log grows past ``start``."""

from __future__ import annotations

import pytest

import chanlog
from bus.conftest import Recorder
from chanlog.backends.memory import MemoryBackend
from chanlog.errors import InvalidArgument
from chanlog.testing import sample_events
from core.lost_records import backup, restore


def test_an_existing_consumer_whose_start_lies_past_the_log_resumes_from_its_position() -> None:
    backend = MemoryBackend()
    store = chanlog.EventStore(backend, projections=[])
    events = sample_events(16)
    store.append_batch(events[:12])
    with store.bus.consumer("c", Recorder(), start=8) as runner:
        runner.drain()
    # A backup taken when the log held 6 records and the consumer stood at 4 (created with
    # start 4 then; its configuration says 8 now), restored under the node.
    copy = backup(backend, 6)
    restore(backend, copy)
    backend.ensure_consumer("c", 4, [">"])
    store.refresh()
    assert len(store) == 6

    handler = Recorder()
    with store.bus.consumer("c", handler, start=8) as runner:
        runner.drain()
        store.append_batch(events[12:16])  # written at the lost offsets 6..9
        runner.drain()
    assert handler.offsets == list(range(4, 10))
    assert store.bus.consumers.info("c").state.position == 10


def test_a_new_consumer_whose_start_lies_past_the_log_is_refused_naming_the_remedy() -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(3))
    with pytest.raises(InvalidArgument) as refused:
        store.bus.consumer("fresh", Recorder(), start=5).start()
    message = str(refused.value)
    assert "start 5 is beyond the end of the log (length 3)" in message
    assert "lost records" in message and "an offset up to 3" in message
    assert store.bus.consumers.states() == []  # nothing created
