"""The one code generator: per-class field plans, and functions compiled from source.

chanlog generates a few functions per class where a generic one would cost too much on every
call: an event's ``__init__`` (:mod:`chanlog.events._fastinit`), its append-path encoder
(:mod:`chanlog.payloads`), its trusted decoder (:mod:`chanlog.fastdecode`) and the methods of
fold records and states (:mod:`chanlog.projections._record`,
:mod:`chanlog.projections.entity`). Each of them

- reads the class through :func:`plan_of`: one :class:`ClassPlan` per class, computed once
  and kept on the class, holding what every generator needs to know about each field (name,
  ``__init__`` keyword, default or factory, converter, validator, amount marker, slot
  descriptor and, resolved on first use, the type hint and its primitive form);
- turns its source into a function through :func:`compile_function`, which registers the
  source with :mod:`linecache` under a unique ``<chanlog generated {purpose} {qualname}>``
  file name, the way attrs does for its own generated methods, so a traceback, ``pdb`` or
  ``inspect.getsource`` through generated code shows the generated lines;
- keeps a reference (non-generated) path for whatever it does not reproduce exactly, and the
  tests compare the two.

The generated source is always built from class and field definitions, never from input.
"""

from __future__ import annotations

import dataclasses
import inspect
import linecache
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs

from chanlog import fields as chanlog_fields

__all__ = [
    "NOTHING",
    "ClassPlan",
    "FieldPlan",
    "FieldType",
    "compile_function",
    "plan_of",
    "slot_descriptor",
]

NOTHING: Any = attrs.NOTHING
"""The default of a field that has none (attrs' own sentinel, for attrs and records alike)."""

ConverterKind = Literal["none", "list_to_tuple", "call", "unsupported"]
"""How a field's converter reads in generated code: no converter; ``fields.to_tuple`` or
``fields.optional_tuple`` (inlined as ``list`` → ``tuple``); any other callable (called);
an ``attrs.Converter`` object (not reproduced: the class keeps attrs' ``__init__``)."""

_PLAN_ATTRIBUTE = "__chanlog_plan__"
_ATTRS_CONVERTER: type | None = getattr(attrs, "Converter", None)
_NONE_TYPE = type(None)


def compile_function(
    source: str, name: str, namespace: dict[str, Any], *, purpose: str, qualname: str
) -> Callable[..., Any]:
    """Compile ``source`` (which defines the function ``name``) with ``namespace`` as its
    globals and return that function.

    The source is registered with :mod:`linecache` as
    ``<chanlog generated {purpose} {qualname}>`` (with a ``-N`` suffix when another source
    already holds that name, e.g. two local classes of the same qualified name), so tracebacks
    through the function show its generated lines. The function keeps its source in
    ``__chanlog_source__``.
    """
    filename = _register(source, f"<chanlog generated {purpose} {qualname}>")
    # The one place chanlog runs generated code; callers build the source from class and
    # field definitions only.
    exec(compile(source, filename, "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    function.__chanlog_source__ = source  # type: ignore[attr-defined]
    return function


def _register(source: str, filename: str) -> str:
    """Put ``source`` in linecache under ``filename``, or under the first free ``-N`` variant
    of it: one name never shows the lines of two different sources."""
    base = filename
    count = 1
    while True:
        # mtime None: linecache.checkcache() leaves the entry alone (there is no file).
        entry = (len(source), None, source.splitlines(True), filename)
        if linecache.cache.setdefault(filename, entry) == entry:
            return filename
        filename = f"{base[:-1]}-{count}>"
        count += 1


def slot_descriptor(cls: type, name: str) -> Any:
    """What ``cls`` (or the nearest base defining it) holds under ``name``: for a slotted
    field, the member descriptor whose ``__set__`` writes the slot directly."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class FieldType:
    """A field's resolved type hint, in the terms the encoder and decoder generate for."""

    hint: Any
    """The resolved hint (``typing.get_type_hints``); ``NOTHING`` when the field has none."""

    primitive: type | None
    """``str``, ``int``, ``bool``, or ``tuple`` for ``tuple[str, ...]``: the types that
    travel in JSON as themselves (a tuple as a list), optionally ``| None``. ``None`` for
    any other hint."""

    nullable: bool
    """The hint admits ``None`` (``X | None``, ``Optional[X]``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldPlan:
    """What every generator needs to know about one field, computed once per class."""

    name: str
    """The attribute name."""

    index: int
    """Position in declaration order (attrs' order, base class fields first)."""

    alias: str
    """The ``__init__`` keyword (attrs' ``alias``; the name for records)."""

    default: Any = NOTHING
    """The default value; ``NOTHING`` when the field is required or has a factory."""

    factory: Callable[..., Any] | None = None
    """The default factory, if any."""

    takes_self: bool = False
    """The factory takes the partly built instance (attrs ``Factory(takes_self=True)``)."""

    init: bool = True
    """The field is an ``__init__`` parameter."""

    kw_only: bool = True
    """The field is keyword-only in ``__init__``."""

    converter: Any = None
    """The converter as declared (``None``: none)."""

    converter_kind: ConverterKind = "none"
    """How generated code applies :attr:`converter`."""

    validator: Any = None
    """The validator as declared (``None``: none)."""

    amount: bool = False
    """Marked with ``fields.AMOUNT``: a uint256 carried in JSON as a decimal string."""

    slot: Any = None
    """What the class holds under the field's name (see :func:`slot_descriptor`)."""

    attribute: Any = None
    """The ``attrs.Attribute`` (what a validator is called with); ``None`` for records."""

    @property
    def omitted_when_none(self) -> bool:
        """The field defaults to ``None``, so the payload leaves it out when it is ``None``."""
        return self.default is None

    @property
    def has_member_slot(self) -> bool:
        """The field lives in a slot that generated code can write through its descriptor."""
        return type(self.slot) is types.MemberDescriptorType


class ClassPlan:
    """The fields of one class, in declaration order, for every generator (see
    :func:`plan_of`). Type hints are resolved on the first call of :meth:`types`, not when
    the plan is made: a plan is made while the class is created, and an annotation may name
    something defined after it."""

    __slots__ = ("_types", "cls", "fields")

    _UNRESOLVED: ClassVar[object] = object()

    def __init__(self, cls: type, fields: tuple[FieldPlan, ...]) -> None:
        self.cls = cls
        self.fields = fields
        self._types: Any = self._UNRESOLVED

    def types(self) -> tuple[FieldType, ...] | None:
        """Each field's :class:`FieldType`, or ``None`` when the class's hints cannot be
        resolved (``typing.get_type_hints`` fails). Computed once."""
        if self._types is self._UNRESOLVED:
            self._types = self._resolve()
        resolved: tuple[FieldType, ...] | None = self._types
        return resolved

    def primitive_types(self) -> tuple[FieldType, ...] | None:
        """:meth:`types` when every field is a primitive (``str``, ``int``, ``bool``,
        ``tuple[str, ...]``, each optionally ``| None``), else ``None``: the classes the
        encoder and decoder are generated for."""
        resolved = self.types()
        if resolved is None or any(kind.primitive is None for kind in resolved):
            return None
        return resolved

    def _resolve(self) -> tuple[FieldType, ...] | None:
        try:
            hints = typing.get_type_hints(self.cls)
        except (NameError, TypeError):  # NameError: an annotation names nothing in scope
            return None
        return tuple(_field_type(hints.get(field.name, NOTHING)) for field in self.fields)

    def __repr__(self) -> str:
        names = ", ".join(field.name for field in self.fields)
        return f"<ClassPlan {self.cls.__qualname__}: {names}>"


def plan_of(cls: type) -> ClassPlan:
    """The field plan of ``cls``: made on the first call, then kept on the class itself (so
    it goes when the class goes) and returned as is.

    For an attrs class the fields are ``attrs.fields(cls)``. For any other class they are its
    own annotations, ``ClassVar`` ones excepted, with the class attributes of the same name as
    defaults (what :func:`chanlog.projections._record.record` declares).
    """
    plan: ClassPlan | None = vars(cls).get(_PLAN_ATTRIBUTE)
    if plan is None:
        fields = _attrs_fields(cls) if attrs.has(cls) else _annotated_fields(cls)
        plan = ClassPlan(cls, fields)
        # Two threads may both get here; either plan is as good, and the last one stays.
        setattr(cls, _PLAN_ATTRIBUTE, plan)
    return plan


def _attrs_fields(cls: type) -> tuple[FieldPlan, ...]:
    planned: list[FieldPlan] = []
    for index, field in enumerate(attrs.fields(cls)):
        default = field.default
        factory = None
        takes_self = False
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            factory = default.factory
            takes_self = bool(default.takes_self)
            default = NOTHING
        converter = field.converter
        kind: ConverterKind
        if converter is None:
            kind = "none"
        elif converter is chanlog_fields.to_tuple or converter is chanlog_fields.optional_tuple:
            kind = "list_to_tuple"
        elif _ATTRS_CONVERTER is not None and isinstance(converter, _ATTRS_CONVERTER):
            kind = "unsupported"
        else:
            kind = "call"
        planned.append(
            FieldPlan(
                name=field.name,
                index=index,
                alias=getattr(field, "alias", None) or field.name,
                default=default,
                factory=factory,
                takes_self=takes_self,
                init=field.init,
                kw_only=field.kw_only,
                converter=converter,
                converter_kind=kind,
                validator=field.validator,
                amount=bool(field.metadata.get("chanlog_amount")),
                slot=slot_descriptor(cls, field.name),
                attribute=field,
            )
        )
    return tuple(planned)


def _annotated_fields(cls: type) -> tuple[FieldPlan, ...]:
    planned: list[FieldPlan] = []
    for name, annotation in inspect.get_annotations(cls).items():
        if _is_class_var(annotation):
            continue
        planned.append(
            FieldPlan(
                name=name,
                index=len(planned),
                alias=name,
                default=vars(cls).get(name, NOTHING),
                slot=slot_descriptor(cls, name),
            )
        )
    return tuple(planned)


def _is_class_var(annotation: Any) -> bool:
    if isinstance(annotation, str):  # postponed: "ClassVar[int]", "typing.ClassVar[int]"
        return annotation.split("[")[0].endswith("ClassVar")
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _field_type(hint: Any) -> FieldType:
    nullable = False
    inner = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [member for member in typing.get_args(hint) if member is not _NONE_TYPE]
        nullable = len(members) != len(typing.get_args(hint))
        inner = members[0] if len(members) == 1 else NOTHING
    primitive: type | None = None
    if inner is str or inner is int or inner is bool:
        primitive = inner
    elif inner == tuple[str, ...]:
        primitive = tuple
    return FieldType(hint=hint, primitive=primitive, nullable=nullable)
