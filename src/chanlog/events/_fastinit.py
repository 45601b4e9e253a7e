"""A generated ``__init__`` per event class: every field checked in one frame.

attrs' own ``__init__`` for a frozen class sets each slot through ``object.__setattr__`` and
then calls each validator as a separate Python function; with the hex checks as regular
expressions that made constructing a ``StateSigned`` cost about three times a bare slotted
class. For each event class that is declared the documented way (``frozen=True, slots=True,
kw_only=True`` with :mod:`chanlog.fields` validators) this module generates, once, an
``__init__`` that

- takes exactly the same keyword arguments, defaults and factories as attrs' one;
- applies the same converters, in the same order, and sets each slot through its member
  descriptor (the frozen ``__setattr__`` stays in place for everyone else);
- evaluates every field's check as one boolean expression, plus one ``binascii.unhexlify``
  per hex field;
- and, only when that fails, runs the validators exactly as attrs does (``attrs.validate``,
  every field in declaration order), so the error raised, its field, rule and message are
  those of the first failing validator. A validator that cannot be inlined (a custom one, or
  ``fields.participants``) is called as attrs calls it, after the inlined ones pass.

The class stays an ordinary attrs class: ``attrs.fields``, ``evolve`` (which calls this
``__init__``, so it validates), ``eq``, ``hash`` and ``repr`` are attrs' own. Whatever this
module does not reproduce exactly (``__attrs_pre_init__``/``__attrs_post_init__``, positional
fields, ``init=False``, factories taking ``self``, ``attrs.Converter`` objects, cached hashes,
non-slotted fields) keeps attrs' ``__init__``: slower, never different.
"""

from __future__ import annotations

import binascii
import importlib
import keyword
import types
from collections.abc import Callable
from typing import Any

import attrs

from chanlog import fields

__all__ = ["install", "slot_descriptor"]

_MEMBER = types.MemberDescriptorType
_ATTRS_CONVERTER: type | None = getattr(attrs, "Converter", None)
_HASH_CACHE_SLOT = "_attrs_cached_hash"

try:  # attrs' own switch for attrs.validators.set_disabled(), read the way attrs' init does
    _attrs_config: Any = importlib.import_module("attr._config")
    _RUN_VALIDATORS = "_cl_config._run_validators is True"
    if not hasattr(_attrs_config, "_run_validators"):
        raise ImportError
except ImportError:  # pragma: no cover - a future attrs without the private module
    _attrs_config = None
    _RUN_VALIDATORS = "not _cl_get_disabled()"


def slot_descriptor(cls: type, name: str) -> Any:
    """What ``cls`` (or the nearest base defining it) holds under ``name``: for a slotted
    attrs field, the member descriptor whose ``__set__`` writes the slot directly."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _is_attrs_init(init: Any) -> bool:
    code = getattr(init, "__code__", None)
    return code is not None and code.co_filename.startswith("<attrs generated")


def _source(cls: type) -> tuple[str, dict[str, Any]] | None:
    """The source of the specialised ``__init__`` and its globals, or ``None`` to keep attrs'."""
    if not _is_attrs_init(vars(cls).get("__init__")):
        return None
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return None
    if any(_HASH_CACHE_SLOT in getattr(klass, "__slots__", ()) for klass in cls.__mro__):
        return None
    names: dict[str, Any] = {
        "_cl_NOTHING": attrs.NOTHING,
        "_cl_validate": attrs.validate,
        "_cl_config": _attrs_config,
        "_cl_get_disabled": attrs.validators.get_disabled,
        "_cl_unhexlify": binascii.unhexlify,
    }
    params: list[str] = []
    body: list[str] = []
    conditions: list[str] = []
    statements: list[str] = []
    custom: list[str] = []
    for index, field in enumerate(attrs.fields(cls)):
        var = getattr(field, "alias", None) or field.name
        if (
            not field.init
            or not field.kw_only
            or not var.isidentifier()
            or keyword.iskeyword(var)
            or var == "self"
            or var.startswith("_cl_")
        ):
            return None
        descriptor = slot_descriptor(cls, field.name)
        if type(descriptor) is not _MEMBER:
            return None
        names[f"_cl_set_{index}"] = descriptor.__set__
        default = field.default
        if default is attrs.NOTHING:
            params.append(var)
        elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                return None
            names[f"_cl_factory_{index}"] = default.factory
            params.append(f"{var}=_cl_NOTHING")
            body.append(f"    if {var} is _cl_NOTHING: {var} = _cl_factory_{index}()")
        else:
            names[f"_cl_default_{index}"] = default
            params.append(f"{var}=_cl_default_{index}")
        converter = field.converter
        if converter is fields.to_tuple or converter is fields.optional_tuple:
            body.append(f"    if type({var}) is list: {var} = tuple({var})")
        elif converter is not None:
            if _ATTRS_CONVERTER is not None and isinstance(converter, _ATTRS_CONVERTER):
                return None
            names[f"_cl_convert_{index}"] = converter
            body.append(f"    {var} = _cl_convert_{index}({var})")
        body.append(f"    _cl_set_{index}(self, {var})")
        validator = field.validator
        if validator is None:
            continue
        inline = validator.inline(var, str(index)) if isinstance(validator, fields._Check) else None
        if inline is None:
            names[f"_cl_validator_{index}"] = validator
            names[f"_cl_attribute_{index}"] = field
            custom.append(f"_cl_validator_{index}(self, _cl_attribute_{index}, {var})")
        else:
            conditions.append(inline.condition)
            if inline.statement is not None:
                statements.append(inline.statement)
            names.update(inline.names)
    lines = [f"def __init__(self, *, {', '.join(params)}):" if params else "def __init__(self):"]
    lines.extend(body)
    if conditions or custom:
        lines.append(f"    if {_RUN_VALIDATORS}:")
        condition = "\n            and ".join(conditions) or "True"
        lines.append(f"        if ({condition}):")
        if statements:
            lines.append("            try:")
            lines.extend(f"                {line}" for line in statements)
            lines.append("            except ValueError:")
            lines.append("                _cl_validate(self)")
            if custom:
                lines.append("            else:")
                lines.extend(f"                {line}" for line in custom)
        else:
            lines.extend(f"            {line}" for line in custom or ["pass"])
        lines.append("        else:")
        lines.append("            _cl_validate(self)")
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n", names


def install(cls: type) -> bool:
    """Give ``cls`` its specialised ``__init__``; ``False`` when attrs' one is kept."""
    generated = _source(cls)
    if generated is None:
        return False
    source, names = generated
    original = vars(cls)["__init__"]
    filename = f"<chanlog generated init {cls.__module__}.{cls.__qualname__}>"
    # The source comes from the attrs field definitions above, never from input.
    exec(compile(source, filename, "exec"), names)
    init: Callable[..., None] = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(getattr(original, "__annotations__", {}))
    init.__doc__ = original.__doc__
    init.__chanlog_source__ = source  # type: ignore[attr-defined]
    # Kept so the tests can check this __init__ against attrs' one, input by input.
    init.__chanlog_attrs_init__ = original  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return True
