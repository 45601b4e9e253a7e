"""The one code generator (chanlog.codegen), the one event-id function, and their boundaries.

Every generated function is compiled by ``codegen.compile_function``, which registers its
source with linecache, so tracebacks show generated lines; every generator reads one field
plan per class; the generated paths equal their reference paths; the event id formula is
spelled in ``chanlog.hashing`` only; and the modules involved are in no import cycle.
"""

from __future__ import annotations

import ast
import inspect
import json
import linecache
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from chanlog import Event, InvalidEvent, codec, codegen, fields, hashing, payloads
from chanlog.events import ChannelCreated, DepositDetected, StateSigned
from chanlog.fastdecode import Mismatch, trusted_decoder
from chanlog.plugins import default_host
from chanlog.projections import _record
from chanlog_samples import make_signed
from chanlog_strategies import any_event

SRC = Path(codegen.__file__).parent
VECTORS = sorted((Path(__file__).parent.parent / "data" / "vectors").glob("*.golden.json"))


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


# -- compile_function and linecache ----------------------------------------------------------


def test_traceback_through_a_generated_function_shows_the_generated_line() -> None:
    source = "def boom(x):\n    y = x + 1\n    raise ValueError(y)\n"
    boom = codegen.compile_function(source, "boom", {}, purpose="test", qualname="tests.Boom")
    with pytest.raises(ValueError) as info:
        boom(1)
    last = _frames(info.value)[-1]
    assert last.filename.startswith("<chanlog generated test tests.Boom")
    assert last.lineno == 3
    assert last.line == "raise ValueError(y)"
    shown = "".join(traceback.format_exception(info.value))
    assert "raise ValueError(y)" in shown
    assert "<string>" not in shown
    assert inspect.getsource(boom) == source
    assert boom.__chanlog_source__ == source  # type: ignore[attr-defined]


def test_registered_source_survives_checkcache() -> None:
    source = "def f():\n    return 1\n"
    f = codegen.compile_function(source, "f", {}, purpose="test", qualname="tests.Checkcache")
    linecache.checkcache()
    assert linecache.getline(f.__code__.co_filename, 2) == "    return 1\n"


def test_one_name_never_shows_two_sources() -> None:
    first = codegen.compile_function(
        "def f():\n    return 1\n", "f", {}, purpose="test", qualname="tests.Same"
    )
    second = codegen.compile_function(
        "def f():\n    return 2\n", "f", {}, purpose="test", qualname="tests.Same"
    )
    again = codegen.compile_function(
        "def f():\n    return 1\n", "f", {}, purpose="test", qualname="tests.Same"
    )
    assert first.__code__.co_filename != second.__code__.co_filename
    assert second.__code__.co_filename.endswith("-1>")
    assert again.__code__.co_filename == first.__code__.co_filename
    assert linecache.getline(first.__code__.co_filename, 2) == "    return 1\n"
    assert linecache.getline(second.__code__.co_filename, 2) == "    return 2\n"


def test_trusted_decoder_traceback_shows_its_generated_line() -> None:
    decoder = trusted_decoder(StateSigned)
    assert decoder is not None
    payload = codec.to_payload(make_signed(1))
    payload["unexpected"] = 1
    with pytest.raises(Mismatch) as info:
        decoder(payload)
    last = _frames(info.value)[-1]
    assert last.filename.startswith("<chanlog generated decode chanlog.events.channel.StateSigned")
    assert last.line == "if len(payload) != count: raise Mismatch"


def test_event_init_traceback_shows_its_generated_line() -> None:
    with pytest.raises(InvalidEvent) as info:
        StateSigned(
            channel_id="0x12",
            turn_num=1,
            state_hash="0x" + "ab" * 32,
            signer="0x" + "cd" * 20,
            signature="0x" + "ef" * 65,
            timestamp_ms=1,
        )
    generated = [f for f in _frames(info.value) if f.filename.startswith("<chanlog generated")]
    assert [f.filename for f in generated] == [
        "<chanlog generated __init__ chanlog.events.channel.StateSigned>"
    ]
    assert generated[0].line == "_cl_validate(self)"


def test_every_generator_goes_through_compile_function() -> None:
    encoder = payloads._raw_encoder(StateSigned)
    decoder = trusted_decoder(StateSigned)
    maker = _record.maker(_Point)
    generated: dict[str, Any] = {
        "__init__": StateSigned.__init__,
        "encode": encoder,
        "decode": decoder,
        "_record_make": maker,
        "__eq__": _Point.__eq__,
        "update": _record.updater(_Point, "x"),
    }
    for purpose, function in generated.items():
        # maker() hands out the staticmethod; its function is what was compiled.
        filename = getattr(function, "__wrapped__", function).__code__.co_filename
        assert filename.startswith(f"<chanlog generated {purpose} "), filename
        assert linecache.getlines(filename), filename


# -- field plans ---------------------------------------------------------------------------


@_record.record
class _Point:
    x: int
    label: str = "a"
    kind: ClassVar[str] = "point"


@pytest.fixture
def counted_plans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[type]]:
    made: list[type] = []
    resolved: list[type] = []
    real_init = codegen.ClassPlan.__init__
    real_resolve = codegen.ClassPlan._resolve

    def counting_init(self: codegen.ClassPlan, cls: type, planned: Any) -> None:
        made.append(cls)
        real_init(self, cls, planned)

    def counting_resolve(self: codegen.ClassPlan) -> Any:
        resolved.append(self.cls)
        return real_resolve(self)

    monkeypatch.setattr(codegen.ClassPlan, "__init__", counting_init)
    monkeypatch.setattr(codegen.ClassPlan, "_resolve", counting_resolve)
    yield made
    assert len(resolved) == len(set(resolved)), "type hints resolved twice for one class"


def test_field_plan_is_computed_once_per_class(counted_plans: list[type]) -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Counted(Event):
        event_type: ClassVar[str] = "counted"
        channel_id: str = attrs.field(validator=fields.bytes32)
        amount: int = attrs.field(default=0, validator=fields.amount, metadata=fields.AMOUNT)
        note: str | None = attrs.field(default=None, validator=fields.optional(fields.text()))

    assert counted_plans == [Counted]  # made once, while the class was created (__init__)
    event = Counted(channel_id="0x" + "ab" * 32, amount=7, timestamp_ms=1)
    canonical, event_id, _ = codec.encode_event_raw(event)
    decoder = trusted_decoder(Counted)
    assert decoder is not None
    assert decoder(orjson.loads(canonical)) == event
    assert codec.from_payload(Counted, orjson.loads(canonical)) == event
    assert event.event_id == event_id
    assert codegen.plan_of(Counted) is codegen.plan_of(Counted)
    assert counted_plans == [Counted]
    # A subclass has a plan of its own, not its parent's.

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Sub(Counted):
        event_type: ClassVar[str] = "counted-sub"
        extra: int = attrs.field(default=0, validator=fields.uint)

    assert counted_plans == [Counted, Sub]
    assert [f.name for f in codegen.plan_of(Sub).fields][-1] == "extra"


def test_record_plan_comes_from_the_declared_class(counted_plans: list[type]) -> None:
    @_record.record
    class Pair:
        left: int
        right: str = "r"
        shape: ClassVar[str] = "pair"

    plan = codegen.plan_of(Pair)
    assert len(counted_plans) == 1  # the declared class's plan, handed on to the built one
    assert [(f.name, f.default) for f in plan.fields] == [
        ("left", codegen.NOTHING),
        ("right", "r"),
    ]
    assert _record.updater(Pair, "left")(Pair(left=1), 2) == Pair(left=2, right="r")
    assert len(counted_plans) == 1


def test_plan_holds_what_the_generators_share() -> None:
    plan = codegen.plan_of(DepositDetected)
    by_name = {f.name: f for f in plan.fields}
    assert [f.name for f in plan.fields] == [f.name for f in attrs.fields(DepositDetected)]
    assert [f.index for f in plan.fields] == list(range(len(plan.fields)))
    assert by_name["amount_deposited"].amount and not by_name["channel_id"].amount
    assert by_name["tx_hash"].omitted_when_none
    assert by_name["timestamp_ms"].factory is not None
    assert by_name["timestamp_ms"].default is codegen.NOTHING
    assert all(f.has_member_slot for f in plan.fields)
    kinds = plan.primitive_types()
    assert kinds is not None
    kind = dict(zip(by_name, kinds, strict=True))
    assert kind["tx_hash"].primitive is str and kind["tx_hash"].nullable
    assert kind["block_num"].primitive is int and not kind["block_num"].nullable
    participants = codegen.plan_of(ChannelCreated)
    by_name = {f.name: f for f in participants.fields}
    assert by_name["participants"].converter_kind == "list_to_tuple"
    types = participants.types()
    assert types is not None
    assert types[by_name["participants"].index].primitive is tuple


def test_hints_are_resolved_on_first_use_not_at_class_creation() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Later(Event):
        event_type: ClassVar[str] = "later"
        # deliberately undefined while the class is created
        value: LaterText = attrs.field(validator=fields.text())  # type: ignore[name-defined]  # noqa: F821

    # The name does not exist while the class is created; the plan is made anyway.
    assert codegen.plan_of(Later).fields[-1].name == "value"
    globals()["LaterText"] = str
    try:
        assert payloads._raw_encoder(Later) is not payloads._reference_encode_raw
        assert trusted_decoder(Later) is not None
        event = Later(value="v", timestamp_ms=1)
        expected = payloads._reference_encode_raw(attrs.evolve(event))
        assert codec.encode_event_raw(event) == expected
    finally:
        del globals()["LaterText"]


def test_unresolvable_hints_keep_the_reference_paths() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Unknown(Event):
        event_type: ClassVar[str] = "unknown-hint"
        # deliberately never defined
        value: NoSuchName = attrs.field(default="x")  # type: ignore[name-defined]  # noqa: F821

    assert codegen.plan_of(Unknown).types() is None
    assert payloads._raw_encoder(Unknown) is payloads._reference_encode_raw
    assert trusted_decoder(Unknown) is None
    assert hasattr(Unknown.__init__, "__chanlog_source__")  # __init__ needs no hints


# -- generated == reference ----------------------------------------------------------------


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.name.split(".")[0])
def test_generated_paths_equal_reference_on_golden_vectors(path: Path) -> None:
    vector = json.loads(path.read_text())
    cls = default_host().event_types[vector["event_name"]]
    canonical = vector["canonical_json"].encode()
    expected_digest = bytes.fromhex(vector["expected_id"][2:])
    assert hashing.event_digest(vector["event_name"], canonical) == expected_digest
    strict = codec.from_payload(cls, vector["payload"])
    decoder = trusted_decoder(cls)
    assert decoder is not None
    fast = decoder(orjson.loads(canonical))
    assert fast == strict
    generated = payloads._raw_encoder(cls)
    assert generated is not payloads._reference_encode_raw
    result = generated(attrs.evolve(fast))
    assert result == payloads._reference_encode_raw(attrs.evolve(fast))
    assert result == (canonical, vector["expected_id"], expected_digest)
    # The generated __init__ and attrs' own build the same event from the same arguments.
    kwargs = {f.name: getattr(strict, f.name) for f in attrs.fields(cls)}
    by_attrs: Event = object.__new__(cls)
    # set on the generated __init__ by chanlog.events._fastinit, unknown to its type
    cls.__init__.__chanlog_attrs_init__(by_attrs, **kwargs)  # type: ignore[attr-defined]
    assert cls(**kwargs) == by_attrs == strict


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(event=any_event)
def test_generated_paths_equal_reference_on_samples(event: Event) -> None:
    cls = type(event)
    with attrs.validators.disabled():
        copy = attrs.evolve(event)
    canonical, event_id, digest = codec.encode_event_raw(copy)
    with attrs.validators.disabled():
        reference = payloads._reference_encode_raw(attrs.evolve(event))
    assert (canonical, event_id, digest) == reference
    assert digest == hashing.event_digest(event.event_type, canonical)
    decoder = trusted_decoder(cls)
    assert decoder is not None
    assert decoder(orjson.loads(canonical)) == codec.from_payload(cls, orjson.loads(canonical))


def test_generated_record_methods_equal_plain_construction() -> None:
    point = _Point(x=1)
    assert _record.maker(_Point)(1, "a") == point
    assert _record.replacer(_Point)(point, label="b") == _Point(x=1, label="b")
    assert _record.updater(_Point, "x")(point, 5) == _Point(x=5)
    assert repr(point) == "_Point(x=1, label='a')"
    assert hash(point) == hash(_Point(x=1))


# -- attrs internals, exec sites, the id formula, import cycles -----------------------------


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_dependency_on_attrs_internals() -> None:
    for path in _python_files():
        text = path.read_text()
        for internal in ("attr._config", "<attrs generated", "_attrs_cached_hash"):
            assert internal not in text, f"{path.relative_to(SRC)} uses {internal!r}"


def test_attrs_init_is_kept_where_attrs_does_more() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True, cache_hash=True, unsafe_hash=True)
    class CachedHash(Event):
        event_type: ClassVar[str] = "cached-hash"
        value: int = attrs.field(default=0, validator=fields.uint)

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class OwnInit(Event):
        event_type: ClassVar[str] = "own-init"
        value: int = attrs.field(default=0, validator=fields.uint)

        def __init__(self, value: int = 0) -> None:
            self.__attrs_init__(value=value * 2, timestamp_ms=0)  # type: ignore[attr-defined]

    assert not hasattr(CachedHash.__init__, "__chanlog_source__")
    assert hash(CachedHash(value=1, timestamp_ms=0)) == hash(CachedHash(value=1, timestamp_ms=0))
    assert not hasattr(OwnInit.__init__, "__chanlog_source__")
    # mypy's attrs plugin sees attrs' keyword-only __init__, not the class's own
    assert OwnInit(3).value == 6  # type: ignore[call-arg]


def _calls(tree: ast.AST, names: set[str]) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
    ]


def test_generated_code_is_compiled_in_codegen_only() -> None:
    for path in _python_files():
        lines = _calls(ast.parse(path.read_text()), {"exec", "eval", "compile"})
        if path.name == "codegen.py":
            assert len(lines) == 2  # exec(compile(...)) once
        else:
            assert not lines, f"{path.relative_to(SRC)}:{lines}"


def test_the_event_id_formula_is_spelled_in_hashing_only() -> None:
    # store.py is being rewritten to call event_digest; until then it is the one exception.
    for path in _python_files():
        if path.name in ("hashing.py", "store.py"):
            continue
        text = path.read_text()
        tree = ast.parse(text)
        constants = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, bytes)
            and node.value.startswith(b"ev1")
        ]
        assert not constants, f"{path.relative_to(SRC)}:{constants}"
    assert hashing.ID_SCHEME == b"ev1"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every chanlog module ``path`` imports: at the top, under TYPE_CHECKING, or inside
    functions (``ast.walk`` sees them all)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from chanlog import codec" imports the module chanlog.codec.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module}


def _cycles() -> list[set[str]]:
    files = {_module_name(path): path for path in _python_files()}
    known = set(files)
    graph = {name: _imports(path, name, known) for name, path in files.items()}
    # Tarjan's strongly connected components: a component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_the_codec_and_generator_modules_are_in_no_import_cycle() -> None:
    mine = {
        "chanlog.codec",
        "chanlog.codegen",
        "chanlog.events",
        "chanlog.events.base",
        "chanlog.events._fastinit",
        "chanlog.fastdecode",
        "chanlog.hashing",
        "chanlog.payloads",
        "chanlog.projections._record",
    }
    for component in _cycles():
        assert not component & mine, sorted(component)
