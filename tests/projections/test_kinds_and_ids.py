"""The library refuses bad arguments to ``reconstruct`` and ``state`` as ``chanlog show``
does (issue 18 item 7): ``at`` beyond the end of the log, an unknown kind (one message that
lists the kinds), a malformed id (``InvalidArgument`` naming the rule, not ``NotFound``);
``message`` and ``messages`` both name the messages projection's entities."""

from __future__ import annotations

from typing import Any

import pytest

from chanlog import EventStore, InvalidArgument, NotFound, hookimpl
from chanlog.cli.demo_events import CHANNEL_ID, OBJECTIVE_ID, demo_events
from chanlog.events import MessageSent
from chanlog.plugins.host import PluginHost
from chanlog.projections.base import DescribesEntities
from chanlog.projections.messages import MessagesProjection
from projections.test_third_party import CHANNEL, TipsPlugin, _tips

MESSAGE = "0x" + "ee" * 32


@pytest.fixture
def store() -> EventStore:
    """The 13 demo events and one message, 14 in all."""
    store = EventStore()
    store.append_batch(demo_events())
    store.append(
        MessageSent(message_id=MESSAGE, peer_id="peer", objective_id=OBJECTIVE_ID, timestamp_ms=1)
    )
    return store


def test_at_beyond_the_end_is_refused_not_clamped(store: EventStore) -> None:
    length = len(store)
    assert store.reconstruct("channel", CHANNEL_ID, at=length) == store.state("channel", CHANNEL_ID)
    with pytest.raises(InvalidArgument) as error:
        store.reconstruct("channel", CHANNEL_ID, at=100)
    assert str(error.value) == f"at 100 is beyond the end of the log ({length} events)"


@pytest.mark.parametrize("call", ["reconstruct", "state"])
def test_an_unknown_kind_is_one_message_listing_the_kinds(store: EventStore, call: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        getattr(store, call)("channels", CHANNEL_ID)
    message = str(error.value)
    assert message == (
        "unknown kind 'channels'; the kinds are channel, message or messages, objective"
    )
    with pytest.raises(InvalidArgument, match="kind must be a projection name"):
        getattr(store, call)(None, CHANNEL_ID)


@pytest.mark.parametrize("kind", ["message", "messages"])
def test_message_and_messages_are_the_same_kind(store: EventStore, kind: str) -> None:
    state = store.reconstruct(kind, MESSAGE)
    assert state.outstanding and state == store.state(kind, MESSAGE)
    assert store.reconstruct(kind, MESSAGE, at=len(store)) == state
    with pytest.raises(NotFound, match=f"no {kind} "):
        store.reconstruct(kind, "0x" + "ef" * 32, at=3)


@pytest.mark.parametrize(
    ("kind", "entity_id", "message"),
    [
        ("channel", "0x1234", "'0x1234' is not a channel id: channel ids are a bytes32 hex"),
        ("objective", "aa" * 32, "is not an objective id: objective ids are a bytes32"),
        ("message", "0x" + "zz" * 32, "is not a message id: message ids are a bytes32"),
        ("messages", "", "'' is not a message id"),
    ],
)
@pytest.mark.parametrize("call", ["reconstruct", "state"])
def test_a_malformed_id_is_not_an_id_of_that_kind(
    store: EventStore, kind: str, entity_id: str, message: str, call: str
) -> None:
    with pytest.raises(InvalidArgument, match="'0x' \\+ 64 hex digits") as error:
        getattr(store, call)(kind, entity_id)
    assert message in str(error.value)


def test_a_well_formed_id_of_nothing_is_not_found(store: EventStore) -> None:
    absent = "0x" + "AB" * 32  # mixed-case hex is a well-formed id
    with pytest.raises(NotFound, match=f"no channel {absent}"):
        store.reconstruct("channel", absent)
    with pytest.raises(NotFound):
        store.reconstruct("channel", absent, at=5)
    with pytest.raises(InvalidArgument, match="entity_id must be a string"):
        store.reconstruct("channel", 5)  # type: ignore[arg-type]


def test_the_built_in_projections_describe_their_entities() -> None:
    assert isinstance(MessagesProjection(), DescribesEntities)
    with EventStore(plugins=PluginHost(load_entry_points=False), projections=[]) as store:
        kinds = store.reconstructor.kinds()
    assert kinds == {
        "objective": "objective",
        "channel": "channel",
        "messages": "messages",
        "message": "messages",
    }


def test_a_projection_that_describes_nothing_takes_any_id() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(TipsPlugin(), name="tips")
    with EventStore(plugins=host, projections=["tips"]) as store:
        store.append_batch(_tips(3))
        assert store.reconstruct("tips", CHANNEL, at=2) == 1 + 2
        with pytest.raises(NotFound, match="no tips whatever"):
            store.reconstruct("tips", "whatever", at=2)
        with pytest.raises(InvalidArgument, match="the kinds are channel, message or"):
            store.reconstruct("tip", CHANNEL)


def test_a_kind_registered_later_is_known(store: EventStore) -> None:
    class Late:
        @hookimpl
        def chanlog_register_projections(self, register: Any) -> None:
            from projections.test_third_party import TipsProjection

            register("tips", TipsProjection)

    host = PluginHost(load_entry_points=False)
    with EventStore(plugins=host) as late:
        with pytest.raises(InvalidArgument, match="unknown kind 'tips'"):
            late.reconstruct("tips", CHANNEL)
        host.register(Late(), name="late")
        with pytest.raises(NotFound, match="no tips"):
            late.reconstruct("tips", CHANNEL)
