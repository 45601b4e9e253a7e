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

import inspect
import itertools
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

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
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    exec("\n".join(source), namespace)
    update: Callable[..., T] = namespace["update"]
    update.__doc__ = f"A copy of a {cls.__qualname__} with {', '.join(changed)} set."
    return update


def as_dict(instance: object) -> dict[str, Any]:
    """The fields of a record and their values (not recursive), in declaration order."""
    return {name: getattr(instance, name) for name in fields(type(instance))}


def _own_fields(cls: type) -> tuple[list[str], dict[str, Any]]:
    annotations = inspect.get_annotations(cls)
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for name, annotation in annotations.items():
        if isinstance(annotation, str) and annotation.split("[")[0].endswith("ClassVar"):
            continue
        names.append(name)
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
    return names, defaults


def _build_record(cls: type[T], *, kw_only: bool) -> type[T]:
    if cls.__bases__ != (object,):
        raise TypeError(f"record {cls.__qualname__} must derive from object only")
    names, defaults = _own_fields(cls)
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
    """Source for the record's methods; generated from the field names, never from input."""
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
    source = [
        f"def __init__(self, {star}{', '.join(params)}):",
        *(f"    self._{name} = {name}" for name in names),
        "    pass",
        f"def _record_make({', '.join(names)}):",
        "    new = _new(_cls)",
        *(f"    new._{name} = {name}" for name in names),
        "    return new",
        f"def _record_replace(self, *, {', '.join(f'{name}=_M' for name in names)}):",
        "    new = _new(_cls)",
        *(f"    new._{name} = self._{name} if {name} is _M else {name}" for name in names),
        "    return new",
        "def __eq__(self, other):",
        "    if type(other) is not _cls:",
        "        return NotImplemented",
        f"    return ({mine},) == ({theirs},)",
        "def __hash__(self):",
        f"    return hash(({mine},))",
        "def __repr__(self):",
        f'    return f"{cls.__qualname__}({shown})"',
    ]
    exec("\n".join(source), namespace)
    generated = {
        key: namespace[key]
        for key in ("__init__", "__eq__", "__hash__", "__repr__")
        if key not in cls.__dict__ or key == "__init__"
    }
    generated["_record_make"] = staticmethod(namespace["_record_make"])
    generated["_record_replace"] = namespace["_record_replace"]
    generated["__init__"].__doc__ = f"A {cls.__qualname__} of the given fields."
    return generated
