"""Subjects and patterns: the compiled filter agrees with a plain reference matcher."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chanlog
from chanlog.bus.subjects import (
    NO_ENTITY,
    SubjectFilter,
    SubjectPattern,
    check_prefix,
    encode_token,
    parse_patterns,
    subject_of,
    subject_parts,
)
from chanlog.errors import InvalidArgument
from chanlog.events import BUILTIN_EVENT_TYPES
from chanlog.workload import Workload, WorkloadConfig


def reference_matches(pattern: str, subject: str) -> bool:
    """NATS semantics, as a regular expression: ``*`` one token, ``>`` the rest."""
    parts = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(r"[^.]+")
        elif token == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    return re.fullmatch(r"\.".join(parts), subject) is not None


GROUPS = {cls.event_type: cls.group for cls in BUILTIN_EVENT_TYPES}
name_token = st.text(alphabet="abcdefgh-_0123456789", min_size=1, max_size=6)
event_types = st.sampled_from(sorted(GROUPS))
entities = st.one_of(
    st.just(()), st.tuples(st.sampled_from(["0xaa", "0xbb", "0xcc", "x.y", "a b", "%"]))
)
prefixes = st.sampled_from(["chanlog", "node-a", "org.node-a"])


def pattern_tokens(subject_like: list[str]) -> st.SearchStrategy[str]:
    """Patterns made of the subject's own tokens, wildcards and strangers."""
    token = st.one_of(st.sampled_from(subject_like), st.just("*"), name_token)
    body = st.lists(token, min_size=1, max_size=6)
    return st.tuples(body, st.booleans()).map(
        lambda parts: ".".join(parts[0] + ([">"] if parts[1] else []))
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data(), prefix=prefixes, event_type=event_types, streams=entities)
def test_the_compiled_filter_agrees_with_the_reference(
    data: st.DataObject, prefix: str, event_type: str, streams: tuple[str, ...]
) -> None:
    group, wire, entity = subject_parts(GROUPS[event_type], event_type, streams)
    subject = f"{prefix}.{group}.{wire}.{entity}"
    tokens = subject.split(".")
    patterns = data.draw(st.lists(pattern_tokens(tokens), min_size=1, max_size=3))
    parsed = [SubjectPattern.parse(p) for p in patterns]
    subject_filter = SubjectFilter(parsed, prefix, GROUPS.get)
    expected = any(reference_matches(p, subject) for p in patterns)
    assert subject_filter.accepts(event_type, streams) is expected
    assert subject_filter.matches_subject(subject) is expected
    for pattern in parsed:
        assert pattern.matches(subject) is reference_matches(pattern.text, subject)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=20))
def test_a_token_never_holds_a_separator_wildcard_or_space(text: str) -> None:
    token = encode_token(text)
    assert token
    assert not re.search(r"[.*>\s]", token)
    assert encode_token(text) == token  # deterministic
    if text and not re.search(r"[%.*>\s\x00-\x1f\x7f]", text):
        assert token == text


def test_distinct_texts_get_distinct_tokens() -> None:
    texts = ["a.b", "a%2Eb", "a b", "a*b", "a>b", "", "%", "a\tb"]
    assert len({encode_token(text) for text in texts}) == len(texts)


def test_records_have_the_subjects_the_design_names() -> None:
    store = chanlog.EventStore()
    store.append_batch(Workload(WorkloadConfig(seed=3, channels=2, turns=3)).events())
    for record in store:
        subject = subject_of(record)
        prefix, group, wire, entity = subject.split(".")
        assert prefix == "chanlog"
        assert group == type(record.event).group
        assert wire == record.event_type
        assert entity == (record.event.streams[0] if record.event.streams else NO_ENTITY)
        assert store.bus.subject_of(record) == subject
    snapshot = store.snapshot()
    last = next(store.read_from(len(store) - 1))
    assert store.bus.subject_of(last) == "chanlog.system.snapshot-created._"
    assert snapshot.offset == len(store) - 1


@pytest.mark.parametrize(
    "bad",
    ["", "a..b", ".a", "a.", "a.>.b", "a.b*", "a.*b", "a.>x", "a b", "a.\tb", None, 5],
)
def test_malformed_patterns_are_refused_naming_the_rule(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="pattern"):
        SubjectPattern.parse(bad)


def test_pattern_lists() -> None:
    assert parse_patterns(None) == ()
    assert [p.text for p in parse_patterns("a.>")] == ["a.>"]
    with pytest.raises(InvalidArgument, match="at least one"):
        parse_patterns([])


@pytest.mark.parametrize("bad", ["", "a..b", "a.*", "a b", "a.>", 3, None])
def test_a_prefix_is_name_tokens(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="prefix"):
        check_prefix(bad)
    assert check_prefix("org.node-a_1") == "org.node-a_1"


def test_everything_is_recognised_for_lag() -> None:
    def compiled(*patterns: str, prefix: str = "chanlog") -> SubjectFilter:
        return SubjectFilter(parse_patterns(list(patterns)), prefix, GROUPS.get)

    assert compiled(">").everything()
    assert compiled("chanlog.>").everything()
    assert compiled("*.*.*.*").everything()
    assert compiled("org.node.>", prefix="org.node").everything()
    assert not compiled("chanlog.channel.>").everything()
    assert not compiled("other.>").everything()
    assert not compiled("chanlog.*.*").everything()
    assert not compiled("chanlog.channel.>", "chanlog.chain.>").everything()


def test_an_unregistered_type_may_be_in_any_group() -> None:
    """Its plugin declared its group, which this node cannot know: a pattern that names a
    group takes it in (taken as "plugin", it was passed over by a pattern naming the group
    its plugin gave it), one that names another type or prefix does not."""

    def accepts(pattern: str, streams: tuple[str, ...] = ("0xaa",)) -> bool:
        compiled = SubjectFilter(parse_patterns(pattern), "chanlog", lambda _t: None)
        return compiled.accepts("fee-charged", streams)

    assert accepts("chanlog.plugin.>") and accepts("chanlog.plugin.>", ())
    assert accepts("chanlog.fees.>")
    assert accepts("chanlog.fees.fee-charged.0xaa")
    assert not accepts("chanlog.fees.fee-charged.0xbb")
    assert not accepts("chanlog.fees.tip-paid.>")
    assert not accepts("node-b.fees.>")
