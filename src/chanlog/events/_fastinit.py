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
non-slotted fields) keeps attrs' ``__init__``: slower, never different. So does every class
under an attrs older than 25.4, whose public API cannot say whether attrs wrote ``__init__``.

The fields are read from the class's :func:`chanlog.codegen.plan_of` plan and the source is
compiled by :func:`chanlog.codegen.compile_function`, so tracebacks show the generated lines.
"""

from __future__ import annotations

import binascii
import keyword
from collections.abc import Callable
from typing import Any

import attrs

from chanlog import codegen, fields
from chanlog.codegen import slot_descriptor

__all__ = ["install", "slot_descriptor"]

# attrs.inspect (attrs >= 25.4) is the public way to learn whether attrs wrote a class's
# __init__ and whether that __init__ also resets a cached hash. Without it there is no public
# way to tell, so every class keeps attrs' own __init__: slower, never different.
_attrs_inspect: Callable[[type], Any] | None = getattr(attrs, "inspect", None)
_HASH_CACHED: Any = (
    attrs.ClassProps.Hashability.HASHABLE_CACHED if hasattr(attrs, "ClassProps") else None
)


def _attrs_wrote_init(cls: type) -> bool:
    """True when ``cls.__init__`` is the one attrs generated from the fields, and it does
    nothing but set and check them (no cached hash to reset)."""
    if _attrs_inspect is None or "__init__" not in vars(cls):
        return False
    try:
        props = _attrs_inspect(cls)
    except (TypeError, ValueError, attrs.exceptions.NotAnAttrsClassError):  # pragma: no cover
        # attrs.inspect is marked experimental: if it changes, class creation must not fail.
        return False
    return props.added_init is True and props.hashability is not _HASH_CACHED


def _source(cls: type) -> tuple[str, dict[str, Any]] | None:
    """The source of the specialised ``__init__`` and its globals, or ``None`` to keep attrs'."""
    if not _attrs_wrote_init(cls):
        return None
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return None
    names: dict[str, Any] = {
        "_cl_NOTHING": attrs.NOTHING,
        "_cl_validate": attrs.validate,
        "_cl_disabled": attrs.validators.get_disabled,
        "_cl_unhexlify": binascii.unhexlify,
    }
    params: list[str] = []
    body: list[str] = []
    conditions: list[str] = []
    statements: list[str] = []
    custom: list[str] = []
    for field in codegen.plan_of(cls).fields:
        index = field.index
        var = field.alias
        if (
            not field.init
            or not field.kw_only
            or not var.isidentifier()
            or keyword.iskeyword(var)
            or var == "self"
            or var.startswith("_cl_")
            or not field.has_member_slot
            or field.takes_self
            or field.converter_kind == "unsupported"
        ):
            return None
        names[f"_cl_set_{index}"] = field.slot.__set__
        if field.factory is not None:
            names[f"_cl_factory_{index}"] = field.factory
            params.append(f"{var}=_cl_NOTHING")
            body.append(f"    if {var} is _cl_NOTHING: {var} = _cl_factory_{index}()")
        elif field.default is codegen.NOTHING:
            params.append(var)
        else:
            names[f"_cl_default_{index}"] = field.default
            params.append(f"{var}=_cl_default_{index}")
        if field.converter_kind == "list_to_tuple":
            body.append(f"    if type({var}) is list: {var} = tuple({var})")
        elif field.converter_kind == "call":
            names[f"_cl_convert_{index}"] = field.converter
            body.append(f"    {var} = _cl_convert_{index}({var})")
        body.append(f"    _cl_set_{index}(self, {var})")
        validator = field.validator
        if validator is None:
            continue
        inline = (
            validator.inline(var, str(index)) if isinstance(validator, fields.InlineCheck) else None
        )
        if inline is None:
            names[f"_cl_validator_{index}"] = validator
            names[f"_cl_attribute_{index}"] = field.attribute
            custom.append(f"_cl_validator_{index}(self, _cl_attribute_{index}, {var})")
        else:
            conditions.append(inline.condition)
            if inline.statement is not None:
                statements.append(inline.statement)
            names.update(inline.names)
    lines = [f"def __init__(self, *, {', '.join(params)}):" if params else "def __init__(self):"]
    lines.extend(body)
    lines.extend(_checks(conditions, statements, custom))
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n", names


def _checks(conditions: list[str], statements: list[str], custom: list[str]) -> list[str]:
    """The validation tail of the generated ``__init__``.

    The inlined conditions and statements are pure and never raise anything but the
    ``ValueError`` caught here, so they run before asking attrs whether validators are
    switched off: a valid event (the common case) pays for no such question, and with
    validators off the outcome is the same as attrs' (nothing is checked, nothing raised).
    Custom validators have effects of their own, so they run only after asking.
    """
    if not conditions and not custom:
        return []
    run_custom = (
        ["if not _cl_disabled():", *(f"    {line}" for line in custom)] if custom else ["pass"]
    )
    if not conditions:
        return [f"    {line}" for line in run_custom]
    condition = "\n            and ".join(conditions)
    lines = [f"    if ({condition}):"]
    if statements:
        lines.append("        try:")
        lines.extend(f"            {line}" for line in statements)
        lines.append("        except ValueError:")
        lines.append("            if not _cl_disabled(): _cl_validate(self)")
        if custom:
            lines.append("        else:")
            lines.extend(f"            {line}" for line in run_custom)
    else:
        lines.extend(f"        {line}" for line in run_custom)
    lines.append("    elif not _cl_disabled():")
    lines.append("        _cl_validate(self)")
    return lines


def install(cls: type) -> bool:
    """Give ``cls`` its specialised ``__init__``; ``False`` when attrs' one is kept."""
    generated = _source(cls)
    if generated is None:
        return False
    source, names = generated
    original = vars(cls)["__init__"]
    init = codegen.compile_function(
        source,
        "__init__",
        names,
        purpose="__init__",
        qualname=f"{cls.__module__}.{cls.__qualname__}",
    )
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(getattr(original, "__annotations__", {}))
    init.__doc__ = original.__doc__
    # Kept so the tests can check this __init__ against attrs' one, input by input.
    init.__chanlog_attrs_init__ = original  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return True
