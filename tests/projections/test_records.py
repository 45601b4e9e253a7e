"""The fast immutable records and the turn map the folds build their states from."""

from __future__ import annotations

import copy
import pickle
from math import isqrt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chanlog.projections._record import as_dict, fields, maker, record, replacer, updater
from chanlog.projections._turns import TurnMap


@record
class Point:
    """A record with a required and a defaulted field."""

    x: int
    label: str = "p"


@record(kw_only=False)
class Pair:
    """A positional record."""

    left: int
    right: int


def test_record_reads_compares_and_shows_its_fields() -> None:
    point = Point(x=1)
    assert (point.x, point.label) == (1, "p")
    assert point == Point(x=1, label="p") and point != Point(x=2)
    others: list[object] = [Pair(1, 2), (1, "p")]  # of other types: never equal
    assert all(point != other for other in others)
    assert hash(point) == hash(Point(x=1))
    assert repr(point) == "Point(x=1, label='p')"
    assert fields(Point) == ("x", "label") and as_dict(point) == {"x": 1, "label": "p"}
    assert Pair(1, 2) == Pair(left=1, right=2)


def test_record_is_immutable_through_its_public_names() -> None:
    point = Point(x=1)
    with pytest.raises(AttributeError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        point.other = 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        Point(1)  # type: ignore[call-arg]  # keyword-only by default
    assert point.x == 1


def test_record_copies_and_pickles() -> None:
    point = Point(x=5, label="q")
    assert copy.copy(point) == point and copy.deepcopy(point) == point
    assert pickle.loads(pickle.dumps(point)) == point


def test_fast_constructors_copy_only_what_they_are_told() -> None:
    point = Point(x=1, label="a")
    assert maker(Point)(7, "b") == Point(x=7, label="b")
    assert replacer(Point)(point, label="c") == Point(x=1, label="c")
    moved = updater(Point, "x")(point, 9)
    assert moved == Point(x=9, label="a") and point == Point(x=1, label="a")


def test_bad_record_definitions_are_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        @record(kw_only=False)
        class Broken:
            first: int = 0
            second: int  # type: ignore[misc]  # the refused definition under test

    with pytest.raises(TypeError, match="derive from object only"):

        @record
        class Derived(Point):
            extra: int

    with pytest.raises(TypeError, match="not a record class"):
        fields(int)
    with pytest.raises(TypeError, match="bad field names"):
        updater(Point, "nope")
    with pytest.raises(TypeError, match="bad field names"):
        updater(Point, "x", "x")
    with pytest.raises(TypeError, match="bad field names"):
        updater(Point)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 80), st.integers()),
        st.tuples(st.just("prune"), st.integers(0, 80), st.just(0)),
    ),
    max_size=200,
)


@given(_OPS)
def test_turn_map_behaves_like_a_dict_and_old_versions_never_change(
    ops: list[tuple[str, int, int]],
) -> None:
    current: TurnMap[int] = TurnMap()
    model: dict[int, int] = {}
    history: list[tuple[TurnMap[int], dict[int, int]]] = []
    for op, turn, value in ops:
        history.append((current, dict(model)))
        if op == "set":
            current = current.set(turn, value)
            model[turn] = value
        else:
            current = current.from_turn(turn)
            model = {each: kept for each, kept in model.items() if each >= turn}
        assert len(current) == len(model)
    for version, expected in [*history, (current, model)]:
        assert list(version) == list(expected)
        assert list(version.items()) == list(expected.items())
        assert version == expected and expected == version
        assert version == TurnMap(expected)
        for turn in range(82):
            assert (turn in version) == (turn in expected)
            assert version.get(turn, -1) == expected.get(turn, -1)
    assert repr(current) == f"TurnMap({model!r})"


def test_turn_map_copies_about_sqrt_n_entries_per_change() -> None:
    """Counting, not timing: the part a change copies stays near the square root of the
    map, so replaying n never-supported turns costs O(n sqrt n), not O(n^2)."""
    turns: TurnMap[int] = TurnMap()
    largest_copy = 0
    for turn in range(5_000):
        turns = turns.set(turn, turn)
        largest_copy = max(largest_copy, len(turns._recent))
    assert len(turns) == 5_000 and turns[4_321] == 4_321
    assert largest_copy <= max(32, isqrt(5_000)) + 1
    with pytest.raises(KeyError):
        turns[5_000]
    assert turns != {1: 1} and turns != "not a map"
    with pytest.raises(TypeError):
        hash(turns)
