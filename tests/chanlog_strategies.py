"""Hypothesis strategies for every built-in event type (shared by the test suites)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from chanlog import fields
from chanlog.events import BUILTIN_EVENT_TYPES, DROP_ERROR_CODES, OBJECTIVE_TYPES, Event

HEX = "0123456789abcdefABCDEF"


def hex_string(digits: int) -> st.SearchStrategy[str]:
    """``0x`` + ``digits`` hex digits in mixed case."""
    return st.text(alphabet=HEX, min_size=digits, max_size=digits).map(lambda h: "0x" + h)


bytes32 = hex_string(64)
address = hex_string(40)
signature = hex_string(130)
amount = st.one_of(
    st.integers(min_value=0, max_value=2**64 + 10),
    st.integers(min_value=2**64, max_value=2**256 - 1),
    st.just(2**256 - 1),
)
uint = st.integers(min_value=0, max_value=fields.MAX_UINT64 - 1)
positive = st.integers(min_value=1, max_value=fields.MAX_UINT64 - 1)
participants = st.lists(address, min_size=2, max_size=6, unique_by=lambda a: a.lower()).map(tuple)

_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(
        [
            "objective_id",
            "channel_id",
            "state_hash",
            "app_data_hash",
            "final_state_hash",
            "final_channel_state",
            "tx_hash",
            "candidate_state_hash",
            "message_id",
            "snapshot_hash",
        ],
        bytes32,
    ),
    **dict.fromkeys(
        ["signer", "approver", "app_definition", "asset", "challenger", "recipient"], address
    ),
    "signature": signature,
    "participants": participants,
    **dict.fromkeys(["amount_deposited", "now_held", "new_amount", "amount"], amount),
    **dict.fromkeys(
        [
            "turn_num",
            "supported_turn",
            "prev_supported_turn",
            "final_turn",
            "block_num",
            "tx_index",
            "side_effects_count",
            "channel_nonce",
            "turn_num_record",
            "finalization_time",
            "new_turn_num_record",
            "finalized_at_turn",
            "roundtrip_ms",
            "payload_size_bytes",
            "snapshot_offset",
            "objective_count",
            "channel_count",
            "timestamp_ms",
        ],
        uint,
    ),
    **dict.fromkeys(["challenge_duration", "num_signatures", "event_version"], positive),
    **dict.fromkeys(["is_final", "success"], st.booleans()),
    "reason": st.text(max_size=40),
    "waiting": st.text(max_size=40),
    "peer_id": st.text(min_size=1, max_size=40),
    "payload_type": st.text(min_size=1, max_size=40),
    "objective_type": st.sampled_from(OBJECTIVE_TYPES),
}

_SPECIAL: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("message-dropped", "error_code"): st.sampled_from(DROP_ERROR_CODES),
    ("objective-rejected", "error_code"): st.text(min_size=1, max_size=64),
}


def event_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Events of one class, with every optional field sometimes absent."""
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        key = (cls.event_type, field.name)
        base = _SPECIAL[key] if key in _SPECIAL else _BY_NAME[field.name]
        kwargs[field.name] = st.none() | base if field.default is None else base
    return st.builds(cls, **kwargs)


any_event: st.SearchStrategy[Event] = st.one_of([event_of(cls) for cls in BUILTIN_EVENT_TYPES])
