"""Subjects: the address every committed record has on the bus (DESIGN section 10).

A subject is ``<prefix>.<group>.<event-type>.<entity>`` in NATS-style tokens separated by
dots: the node's prefix (``chanlog`` by default; it may itself hold several tokens), the
event's family (its class's ``group``), its wire name, and the record's primary entity id,
or ``_`` when it belongs to no entity. A token never holds a dot, a wildcard character,
whitespace or a control character; those (and ``%``) are percent-encoded, so every record has
a well-formed subject whatever a plugin names its types and entities (ADR 0026).

A pattern is a subject whose tokens may be ``*`` (exactly one token) or, as its last
token, ``>`` (one or more tokens). Patterns are parsed once (:class:`SubjectPattern`) and
compiled against a node's prefix into a :class:`SubjectFilter`, which decides per event
type, without building the subject string, whether a record matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from chanlog.arguments import items_once
from chanlog.errors import InvalidArgument
from chanlog.records import RecordedEvent

__all__ = [
    "DEFAULT_PREFIX",
    "NO_ENTITY",
    "SubjectFilter",
    "SubjectPattern",
    "check_prefix",
    "encode_token",
    "entity_token",
    "parse_patterns",
    "subject_of",
    "subject_parts",
]

DEFAULT_PREFIX = "chanlog"
"""The prefix of a node that names none (``[bus] prefix``)."""

NO_ENTITY = "_"
"""The entity token of a record that belongs to no entity."""

_NAME_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# What a literal token may not contain: the separator, the wildcards, whitespace, controls.
_UNSAFE = re.compile(r"[%.*>\s\x00-\x1f\x7f]")


def encode_token(text: str) -> str:
    """``text`` as one subject token: ``%``, ``.``, ``*``, ``>``, whitespace and control
    characters become ``%XX`` (UTF-8 bytes); an empty text becomes ``%``."""
    if not text:
        return "%"
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def entity_token(streams: Sequence[str]) -> str:
    """The entity token of a record with these (lower-cased) streams: the primary one."""
    return encode_token(streams[0]) if streams else NO_ENTITY


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is one or more dot-separated name tokens (letters, digits,
    ``_`` and ``-``).

    Raises:
        InvalidArgument: naming the rule.
    """
    if not isinstance(prefix, str) or not all(
        _NAME_TOKEN.fullmatch(token) for token in prefix.split(".")
    ):
        raise InvalidArgument(
            f"bus prefix must be dot-separated tokens of letters, digits, '_' and '-', "
            f"got {prefix!r}"
        )
    return prefix


def subject_parts(group: str, event_type: str, streams: Sequence[str]) -> tuple[str, str, str]:
    """The three tokens after the prefix: group, event type and entity."""
    return encode_token(group), encode_token(event_type), entity_token(streams)


def subject_of(record: RecordedEvent, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject of a committed record on a node with this prefix."""
    event = record.event
    group, event_type, entity = subject_parts(type(event).group, event.event_type, event.streams)
    return f"{prefix}.{group}.{event_type}.{entity}"


@attrs.frozen
class SubjectPattern:
    """A parsed subject pattern (see the module docs).

    Attributes:
        text: the pattern as written.
        tokens: its tokens; ``*`` and a final ``>`` are wildcards.
    """

    text: str
    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, text: object) -> SubjectPattern:
        """Parse ``text``.

        Raises:
            InvalidArgument: an empty token, ``>`` anywhere but last, a wildcard character
                inside a token, or whitespace.
        """
        if not isinstance(text, str) or not text:
            raise InvalidArgument(f"a subject pattern must be a non-empty string, got {text!r}")
        tokens = tuple(text.split("."))
        for index, token in enumerate(tokens):
            problem = None
            if not token:
                problem = "has an empty token"
            elif token == ">" and index != len(tokens) - 1:
                problem = "has '>' before its last token"
            elif token not in ("*", ">") and ("*" in token or ">" in token):
                problem = f"has a wildcard inside the token {token!r} (wildcards are whole tokens)"
            elif re.search(r"[\s\x00-\x1f\x7f]", token):
                problem = "contains whitespace or a control character"
            if problem is not None:
                raise InvalidArgument(f"malformed subject pattern {text!r}: it {problem}")
        return cls(text, tokens)

    def matches(self, subject: str) -> bool:
        """Whether ``subject`` (a full subject string) matches this pattern."""
        subject_tokens = subject.split(".")
        for index, token in enumerate(self.tokens):
            if token == ">":
                return len(subject_tokens) > index
            if index >= len(subject_tokens):
                return False
            if token != "*" and token != subject_tokens[index]:
                return False
        return len(subject_tokens) == len(self.tokens)

    def __str__(self) -> str:
        return self.text


def parse_patterns(
    patterns: str | Iterable[str] | Iterable[SubjectPattern] | None,
) -> tuple[SubjectPattern, ...]:
    """Parse one pattern or several (``None``: none); parsed ones are kept as they are.

    Raises:
        InvalidArgument: a malformed pattern, an empty list, or neither a string nor a list.
    """
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        return (SubjectPattern.parse(patterns),)
    listed = items_once(
        patterns, lambda: f"subjects must be a pattern or a list of patterns, got {patterns!r}"
    )
    parsed = tuple(
        item if isinstance(item, SubjectPattern) else SubjectPattern.parse(item) for item in listed
    )
    if not parsed:
        raise InvalidArgument("subjects must name at least one pattern (or be left out)")
    return parsed


# What a pattern decides for one event type: every entity, none, or these entity tokens.
_ALL: Any = True
_NONE: Any = False


class SubjectFilter:
    """Patterns compiled for one node's prefix: which records match any of them.

    The decision is made once per event type (the subject's first tokens depend only on
    it) and cached, so a record costs a dict lookup and, for patterns that name an
    entity, a set lookup.

    Args:
        patterns: the patterns (any one matching is enough).
        prefix: the node's prefix.
        group_of: event type → its group (``None`` for a type no plugin registers: any
            group token of a pattern is taken to match it).
    """

    __slots__ = ("_by_type", "_group_of", "_prefix_tokens", "patterns", "prefix")

    def __init__(
        self,
        patterns: Sequence[SubjectPattern],
        prefix: str,
        group_of: Callable[[str], str | None],
    ) -> None:
        self.patterns = tuple(patterns)
        self.prefix = check_prefix(prefix)
        self._prefix_tokens = prefix.split(".")
        self._group_of = group_of
        self._by_type: dict[str, Any] = {}

    def __repr__(self) -> str:
        shown = ", ".join(pattern.text for pattern in self.patterns)
        return f"SubjectFilter([{shown}], prefix={self.prefix!r})"

    def accepts(self, event_type: str, streams: Sequence[str]) -> bool:
        """Whether a record of ``event_type`` with these streams matches."""
        decision = self._by_type.get(event_type)
        if decision is None:
            decision = self._by_type[event_type] = self._decide(event_type)
        if decision is _ALL or decision is _NONE:
            return bool(decision)
        return entity_token(streams) in decision

    def matches(self, record: RecordedEvent) -> bool:
        """Whether a committed record matches."""
        event = record.event
        return self.accepts(event.event_type, event.streams)

    def matches_subject(self, subject: str) -> bool:
        """Whether a full subject string matches (what a remote broker hands over)."""
        return any(pattern.matches(subject) for pattern in self.patterns)

    def everything(self) -> bool:
        """True when every record of this node matches (lag is then plain arithmetic)."""
        return any(_covers_all(pattern.tokens, self._prefix_tokens) for pattern in self.patterns)

    def _decide(self, event_type: str) -> Any:
        # A type no installed plugin registers has a group this node cannot know (its
        # plugin declared it): any group token may be it, so that a pattern naming the
        # group takes the record in (and the consumer stops at it, unable to decode it)
        # rather than passing over it without a word.
        group = self._group_of(event_type)
        fixed = [
            *self._prefix_tokens,
            None if group is None else encode_token(group),
            encode_token(event_type),
        ]
        entities: set[str] = set()
        for pattern in self.patterns:
            decision = _decide_pattern(pattern.tokens, fixed)
            if decision is _ALL:
                return _ALL
            if decision is not _NONE:
                entities.add(decision)
        return frozenset(entities) if entities else _NONE


def _decide_pattern(tokens: tuple[str, ...], fixed: list[str | None]) -> Any:
    """One pattern against the fixed tokens of a subject (``None``: a token not known,
    which any token may be) and an unknown entity token: every entity, none, or the one
    entity token it names."""
    for index, token in enumerate(tokens):
        if token == ">":
            return _ALL  # at least one token (the entity) always follows what is fixed
        if index == len(fixed):  # the entity token
            if len(tokens) != len(fixed) + 1:
                return _NONE
            return _ALL if token == "*" else token
        if token != "*" and fixed[index] is not None and token != fixed[index]:
            return _NONE
    return _NONE  # the pattern ends before the entity token


def _covers_all(tokens: tuple[str, ...], prefix_tokens: list[str]) -> bool:
    """Whether a pattern matches every subject under this prefix: the prefix (or
    wildcards), then only wildcards: a ``>``, or exactly three ``*``."""
    for index, token in enumerate(tokens):
        if token == ">":
            return True
        if index < len(prefix_tokens):
            if token != "*" and token != prefix_tokens[index]:
                return False
        elif token != "*":
            return False
    return len(tokens) == len(prefix_tokens) + 3
