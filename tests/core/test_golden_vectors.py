"""The original implementation's golden vectors reproduce byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chanlog import codec
from chanlog.plugins import default_host

VECTORS = sorted((Path(__file__).parent.parent / "data" / "vectors").glob("*.golden.json"))


def test_all_four_vectors_are_present() -> None:
    assert [p.name.split(".")[0] for p in VECTORS] == [
        "deposit-detected",
        "message-dropped",
        "objective-created",
        "state-signed",
    ]


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name.split(".")[0])
def test_vector_canonical_json_and_id(path: Path) -> None:
    vector = json.loads(path.read_text())
    event = codec.decode_event(vector["event_name"], vector["payload"], default_host().event_types)
    assert event.event_type == vector["event_name"]
    assert event.canonical_json() == vector["canonical_json"].encode()
    assert event.event_id == vector["expected_id"]
    canonical, event_id = codec.encode_event(event)
    assert canonical == vector["canonical_json"].encode()
    assert event_id == vector["expected_id"]
    # Decoding the canonical bytes gives the same event back.
    again = codec.decode_event(vector["event_name"], canonical, default_host().event_types)
    assert again == event
    assert again.event_id == vector["expected_id"]


def test_changing_any_byte_of_the_payload_changes_the_id() -> None:
    vector = json.loads((VECTORS[0]).read_text())
    payload = dict(vector["payload"])
    payload["block_num"] += 1
    event = codec.decode_event(vector["event_name"], payload, default_host().event_types)
    assert event.event_id != vector["expected_id"]
