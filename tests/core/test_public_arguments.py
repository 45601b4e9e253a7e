"""Bad arguments to the store's public methods: an InvalidArgument naming the parameter,
raised before anything is written (DESIGN: errors name the field and the rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanlog import EventStore, InvalidArgument
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing.events import message_sent, sample_events

NOT_COUNTS: list[Any] = [-1, 1.5, True, False, "0", None, float("nan"), [0]]
NOT_IDS: list[Any] = [None, 1, 1.5, b"0xab", ["0xab"]]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    backend = None if request.param == "memory" else SqliteBackend(tmp_path / "log.db")
    with EventStore(backend, projections=[]) as opened:
        opened.append_batch(sample_events(3))
        yield opened


def _called(call: Callable[[], Any]) -> None:
    result = call()
    if isinstance(result, Iterator):  # a lazy read refuses when it is first read
        list(result)


def refused(call: Callable[[], Any], parameter: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        _called(call)
    assert parameter in str(raised.value)
    return raised.value


@pytest.mark.parametrize("version", [*NOT_COUNTS[:-3], [0]])
def test_append_refuses_an_expected_version_that_is_not_a_count(
    store: EventStore, version: Any
) -> None:
    refused(lambda: store.append(message_sent(100), expected_version=version), "expected_version")
    assert len(store) == 3


@pytest.mark.parametrize("version", NOT_COUNTS)
def test_append_batch_refuses_an_expected_version_that_is_not_a_count(
    store: EventStore, version: Any
) -> None:
    stream = "0x" + "ab" * 32
    refused(
        lambda: store.append_batch([message_sent(100)], expected_versions={stream: version}),
        "expected_versions",
    )
    assert len(store) == 3


@pytest.mark.parametrize("stream", NOT_IDS[1:])
def test_append_batch_refuses_an_expected_versions_key_that_is_not_an_id(
    store: EventStore, stream: Any
) -> None:
    if isinstance(stream, list):
        stream = tuple(stream)  # a mapping's key must be hashable to reach the store
    refused(
        lambda: store.append_batch([message_sent(100)], expected_versions={stream: 0}),
        "expected_versions",
    )
    assert len(store) == 3


@pytest.mark.parametrize("events", [None, 3, "", "events", message_sent(100)])
def test_append_batch_refuses_what_is_not_a_sequence_of_events(
    store: EventStore, events: Any
) -> None:
    refused(lambda: store.append_batch(events), "events")
    assert len(store) == 3


@pytest.mark.parametrize("entity_id", NOT_IDS)
def test_stream_reads_refuse_an_entity_id_that_is_not_a_string(
    store: EventStore, entity_id: Any
) -> None:
    refused(lambda: store.stream_version(entity_id), "entity_id")
    refused(lambda: store.stream_events(entity_id), "entity_id")


@pytest.mark.parametrize("bound", [-1, 1.5, True, "0"])
def test_stream_events_refuses_a_bound_that_is_not_an_offset(store: EventStore, bound: Any) -> None:
    entity_id = "0x" + "ab" * 32
    refused(lambda: store.stream_events(entity_id, bound), "start")
    refused(lambda: store.stream_events(entity_id, 0, bound), "end")


@pytest.mark.parametrize("callback", [None, 1, "print"])
def test_subscribe_refuses_a_callback_that_cannot_be_called(
    store: EventStore, callback: Any
) -> None:
    refused(lambda: store.subscribe(callback), "callback")
    assert store.subscriptions == []


@pytest.mark.parametrize("name", [1, b"name", ["name"]])
def test_subscribe_refuses_a_name_that_is_not_a_string(store: EventStore, name: Any) -> None:
    refused(lambda: store.subscribe(lambda record: None, name=name), "name")
    assert store.subscriptions == []


@pytest.mark.parametrize(
    ("subjects", "named"),
    [(1, "subjects"), (1.5, "subjects"), (True, "subjects"), (b">", "subjects"), ([1], "subject")],
)
def test_subjects_must_be_patterns(store: EventStore, subjects: Any, named: str) -> None:
    refused(lambda: store.subscribe(lambda record: None, subjects=subjects), named)
    refused(lambda: store.bus.consumer("c", lambda record: None, subjects=subjects), named)
    assert store.subscriptions == []


@pytest.mark.parametrize("progress", [1, "print", True])
def test_verify_refuses_a_progress_that_cannot_be_called(store: EventStore, progress: Any) -> None:
    refused(lambda: store.verify(progress), "progress")
    refused(lambda: store.check_integrity(progress=progress), "progress")


def _park_everything(store: EventStore) -> None:
    def failing(_record: Any) -> None:
        raise RuntimeError("parked on purpose")

    with store.bus.consumer("parking", failing, max_deliver=1, backoff=0) as runner:
        runner.drain()


@pytest.mark.parametrize("offsets", [1, -1, [-1], [1.5], ["1"], [True], "1", [None]])
def test_replay_and_drop_refuse_offsets_that_are_not_offsets(
    store: EventStore, offsets: Any
) -> None:
    _park_everything(store)
    consumers = store.bus.consumers
    refused(lambda: consumers.replay("parking", offsets), "offsets")
    refused(lambda: consumers.drop("parking", offsets), "offsets")
    parked = consumers.parked("parking")
    assert [record.offset for record in parked] == [0, 1, 2]
    assert not any(record.replay for record in parked)


def test_replay_and_drop_take_offsets_from_a_generator(store: EventStore) -> None:
    _park_everything(store)
    consumers = store.bus.consumers
    assert consumers.replay("parking", (offset for offset in (0, 1))) == 2
    assert consumers.drop("parking", (offset for offset in (1, 2))) == 2
    assert [record.offset for record in consumers.parked("parking")] == [0]


@pytest.mark.parametrize("event_id", ["", "0x", "0xab", "0x" + "ab" * 33, "ab" * 31, 7, None])
def test_get_refuses_what_is_not_an_event_id(store: EventStore, event_id: Any) -> None:
    refused(lambda: store.get(event_id), "event id")


@pytest.mark.parametrize("name", [[], ["objective"], {"objective": 1}])
def test_projection_refuses_a_name_that_is_not_a_string(store: EventStore, name: Any) -> None:
    refused(lambda: store.projection(name), "projection name")
    refused(lambda: store.inline_projection(name), "projection name")


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True, float("nan")])
def test_run_once_refuses_a_limit_that_is_not_a_count(store: EventStore, limit: Any) -> None:
    with store.bus.consumer("counting", lambda record: None) as runner:
        refused(lambda: runner.run_once(limit=limit), "limit")
    assert store.bus.consumers.state("counting").position == 0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"serializer": 1}, "serializer"),
        ({"serializer": ["json"]}, "serializer"),
        ({"projections": 1}, "projections"),
        ({"projections": "objective"}, "projections"),
        ({"projections": [1]}, "projections"),
        ({"broker_options": 1}, "broker_options"),
        ({"broker_options": "url"}, "broker_options"),
    ],
)
def test_a_store_refuses_options_of_the_wrong_type(options: dict[str, Any], named: str) -> None:
    refused(lambda: EventStore(**options), named)


NOT_A_COUNT = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(min_value=0), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(version=NOT_A_COUNT, offset=NOT_A_COUNT)
def test_no_count_but_an_int_from_zero_is_taken(version: Any, offset: Any) -> None:
    with EventStore(projections=[]) as store:
        store.append_batch(sample_events(2))
        stream = "0x" + "ab" * 32
        refused(
            lambda: store.append_batch([message_sent(9)], expected_versions={stream: version}),
            "expected_versions",
        )
        if version is not None:  # append's "no expectation"
            refused(
                lambda: store.append(message_sent(9), expected_version=version), "expected_version"
            )
        refused(lambda: store.stream_events(stream, offset), "start")
        refused(lambda: store.bus.consumers.replay("none", [offset]), "offsets")
        assert len(store) == 2
