"""Immutable records that folds can copy cheaply.

A fold makes one new state per event, so the cost of copying a state is paid for every
event replayed. ``attrs`` frozen classes can only be written through ``object.__setattr__``
or a slot descriptor's ``__set__`` (~90 ns per field), because their ``__setattr__`` refuses
writes. A :func:`record` class instead stores each field in a private slot (``_name``) that
generated code fills with plain attribute stores (~15 ns per field) and exposes it through
a read-only property, so the public shape is that of a frozen class: ``state.field`` reads,
``state.field = x`` raises :class:`AttributeError`, equal fields compare equal, and the
repr names every field.

Folds build records with :func:`maker` (positional, every field) or :func:`replacer`
(keyword, copies what is not given); neither runs validators: records are built by folds
and by strict snapshot readers only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

from chanlog import codegen

__all__ = ["as_dict", "fields", "maker", "record", "replacer", "updater"]

T = TypeVar("T")
_MISSING: Any = object()
_FIELDS = "__record_fields__"


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, kw_only: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, kw_only_default=True)
def record(cls: type[T] | None = None, /, *, kw_only: bool = True) -> Any:
    """Turn a class of annotated fields (with optional defaults) into an immutable record.

    The class must derive from ``object`` only. ``kw_only=False`` makes ``__init__`` take
    the fields positionally too (in declaration order).
    """

    def build(target: type[T]) -> type[T]:
        return _build_record(target, kw_only=kw_only)

    return build if cls is None else build(cls)


def fields(cls: type) -> tuple[str, ...]:
    """The field names of a record class, in declaration order."""
    names: tuple[str, ...] | None = getattr(cls, _FIELDS, None)
    if names is None:
        raise TypeError(f"{cls.__qualname__} is not a record class")
    return names


def maker(cls: type[T]) -> Callable[..., T]:
    """The fastest constructor of a record: every field, positionally, unchecked."""
    fields(cls)
    make: Callable[..., T] = cls.__dict__["_record_make"]
    return make


def replacer(cls: type[T]) -> Callable[..., T]:
    """``replace(record, **changes)``: a copy of ``record`` with the given fields changed."""
    fields(cls)
    replace: Callable[..., T] = cls.__dict__["_record_replace"]
    return replace


def updater(cls: type[T], *changed: str) -> Callable[..., T]:
    """``update(record, *values)``: a copy of ``record`` with the ``changed`` fields set to
    ``values`` (positionally, in that order) and every other field copied. Faster than
    :func:`replacer` for a fold that always changes the same fields."""
    names = fields(cls)
    unknown = [name for name in changed if name not in names]
    if unknown or len(set(changed)) != len(changed) or not changed:
        raise TypeError(f"updater({cls.__qualname__}): bad field names {changed!r}")
    source = [
        f"def update(self, {', '.join(changed)}):",
        "    new = _new(_cls)",
        *(
            f"    new._{name} = {name}" if name in changed else f"    new._{name} = self._{name}"
            for name in names
        ),
        "    return new",
    ]
    update: Callable[..., T] = codegen.compile_function(
        "\n".join(source) + "\n",
        "update",
        {"_new": object.__new__, "_cls": cls},
        purpose="update",
        qualname=f"{cls.__module__}.{cls.__qualname__}",
    )
    update.__doc__ = f"A copy of a {cls.__qualname__} with {', '.join(changed)} set."
    return update


def as_dict(instance: object) -> dict[str, Any]:
    """The fields of a record and their values (not recursive), in declaration order."""
    return {name: getattr(instance, name) for name in fields(type(instance))}


def _build_record(cls: type[T], *, kw_only: bool) -> type[T]:
    if cls.__bases__ != (object,):
        raise TypeError(f"record {cls.__qualname__} must derive from object only")
    # The declared class's own plan (names, class-level defaults). It is kept on the class,
    # so the namespace copied below hands it on to the built class, whose own namespace holds
    # properties, not defaults, under the field names.
    plan = codegen.plan_of(cls)
    names = [field.name for field in plan.fields]
    defaults = {
        field.name: field.default for field in plan.fields if field.default is not codegen.NOTHING
    }
    if not kw_only:
        for before, after in itertools.pairwise(names):
            if before in defaults and after not in defaults:
                raise TypeError(f"record {cls.__qualname__}: {after} without a default follows")
    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in defaults and key not in ("__dict__", "__weakref__")
    }
    namespace["__slots__"] = tuple(f"_{name}" for name in names)
    namespace["__qualname__"] = cls.__qualname__
    namespace[_FIELDS] = tuple(names)
    for name in names:
        namespace[name] = property(attrgetter(f"_{name}"), doc=f"The record's ``{name}``.")
    built: type[T] = type(cls.__name__, (object,), namespace)
    for name, function in _generated(built, names, defaults, kw_only=kw_only).items():
        setattr(built, name, function)
    return built


def _generated(
    cls: type, names: list[str], defaults: dict[str, Any], *, kw_only: bool
) -> dict[str, Callable[..., Any]]:
    """The record's methods; generated from the field names, never from input."""
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_M": _MISSING}
    params = []
    for name in names:
        if name in defaults:
            namespace[f"_default_{name}"] = defaults[name]
            params.append(f"{name}=_default_{name}")
        else:
            params.append(name)
    star = "*, " if kw_only else ""
    mine = ", ".join(f"self._{name}" for name in names)
    theirs = ", ".join(f"other._{name}" for name in names)
    shown = ", ".join(f"{name}={{self._{name}!r}}" for name in names)
    sources = {
        "__init__": [
            f"def __init__(self, {star}{', '.join(params)}):",
            *(f"    self._{name} = {name}" for name in names),
            "    pass",
        ],
        "_record_make": [
            f"def _record_make({', '.join(names)}):",
            "    new = _new(_cls)",
            *(f"    new._{name} = {name}" for name in names),
            "    return new",
        ],
        "_record_replace": [
            f"def _record_replace(self, *, {', '.join(f'{name}=_M' for name in names)}):",
            "    new = _new(_cls)",
            *(f"    new._{name} = self._{name} if {name} is _M else {name}" for name in names),
            "    return new",
        ],
        "__eq__": [
            "def __eq__(self, other):",
            "    if type(other) is not _cls:",
            "        return NotImplemented",
            f"    return ({mine},) == ({theirs},)",
        ],
        "__hash__": ["def __hash__(self):", f"    return hash(({mine},))"],
        "__repr__": ["def __repr__(self):", f'    return f"{cls.__qualname__}({shown})"'],
    }
    qualname = f"{cls.__module__}.{cls.__qualname__}"
    generated: dict[str, Any] = {}
    for name, lines in sources.items():
        # A comparison or repr the class defines itself stays.
        if name in ("__eq__", "__hash__", "__repr__") and name in cls.__dict__:
            continue
        generated[name] = codegen.compile_function(
            "\n".join(lines) + "\n", name, namespace, purpose=name, qualname=qualname
        )
    generated["_record_make"] = staticmethod(generated["_record_make"])
    generated["__init__"].__doc__ = f"A {cls.__qualname__} of the given fields."
    return generated
