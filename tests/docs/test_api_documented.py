"""Every public name and every hook is documented.

Definition used here. A name of ``chanlog.__all__`` is *documented* when

1. the API reference (the built ``reference/`` pages) renders it: the page has an anchor whose
   id is the name's canonical path (``chanlog.store.EventStore`` for ``chanlog.EventStore``), so
   a reader finds its signature and members where it is defined; and
2. it is explained in words: it has a docstring of its own, or (for plain data such as
   ``__version__``, which cannot carry one at runtime) its name appears in backticks in a page
   under ``docs/``.

A hook of ``chanlog.plugins.hookspecs`` is documented when it is rendered in the reference,
has a docstring, and the plugin guide (``docs/guides/writing-plugins.md``) names it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import attrs
import pytest

import chanlog
from chanlog.events import BUILTIN_EVENT_TYPES
from chanlog.plugins import hookspecs

ANCHOR = re.compile(r'\bid="(chanlog(?:_[a-z]+)?(?:\.[A-Za-z0-9_]+)*)"')
PLUGIN_PACKAGES = ("chanlog_postgres", "chanlog_msgpack", "chanlog_nats", "chanlog_otel")
"""The plugin distributions of plugins/, whose ``__all__`` docs/reference/plugin-packages.md
renders."""
PLUGIN_GUIDE = Path("docs/guides/writing-plugins.md")


def rendered_anchors(site: Path) -> set[str]:
    """The ids of every ``chanlog...`` heading the API reference pages render."""
    anchors: set[str] = set()
    for page in (site / "reference").rglob("*.html"):
        anchors.update(ANCHOR.findall(page.read_text(encoding="utf-8")))
    return anchors


def canonical_paths(name: str, obj: object, package: str = "chanlog") -> set[str]:
    """Where ``obj`` (exported as ``<package>.<name>``) may be documented.

    Classes and functions know where they are defined. Plain objects (a marker instance, a
    tuple, a string) do not, so every module of ``package`` that binds ``name`` to this very
    object is a candidate.
    """
    if isinstance(obj, type | types.FunctionType):
        return {f"{obj.__module__}.{obj.__qualname__}"}
    candidates = set()
    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] != package or module is None:
            continue
        if getattr(module, name, None) is obj:
            candidates.add(f"{module_name}.{name}")
    return candidates


def has_own_docstring(obj: object) -> bool:
    """True when the object carries a docstring written for it (not one inherited from a
    builtin type such as ``str`` or ``tuple``)."""
    if isinstance(obj, type | types.FunctionType):
        return bool((obj.__doc__ or "").strip())
    return False


def mentioned_in_docs(name: str, docs_dir: Path) -> bool:
    """True when a docs page mentions ``name`` in backticks (as code)."""
    pattern = re.compile(rf"`[^`\n]*\b{re.escape(name)}\b[^`\n]*`")
    return any(pattern.search(page.read_text(encoding="utf-8")) for page in docs_dir.rglob("*.md"))


def undocumented(
    names: Iterable[str], namespace: object, anchors: set[str], docs_dir: Path
) -> list[str]:
    """Every name of ``names`` (attributes of ``namespace``, a package or a stand-in for
    ``chanlog``) that is not documented, with why."""
    package = getattr(namespace, "__name__", "chanlog")
    problems = []
    for name in names:
        obj = getattr(namespace, name)
        paths = canonical_paths(name, obj, package)
        if not paths & anchors:
            problems.append(
                f"{name}: not rendered in the API reference (looked for {sorted(paths)})"
            )
        elif not (has_own_docstring(obj) or mentioned_in_docs(name, docs_dir)):
            problems.append(f"{name}: no docstring, and no docs page mentions `{name}`")
    return problems


def hook_names() -> list[str]:
    """Every hook specification in :mod:`chanlog.plugins.hookspecs`."""
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, "chanlog_spec")
    )


@pytest.fixture(scope="module")
def anchors(built_site: Path) -> set[str]:
    found = rendered_anchors(built_site)
    assert found, "the API reference rendered no chanlog object at all"
    return found


@pytest.mark.parametrize("name", sorted(chanlog.__all__))
def test_public_name_is_documented(name: str, anchors: set[str], repo_root: Path) -> None:
    problems = undocumented([name], chanlog, anchors, repo_root / "docs")
    assert not problems, (
        f"{problems[0]}. Add its module to a page under docs/reference/ (a `::: module` "
        "directive) and give it a docstring."
    )


def plugin_exports() -> list[tuple[str, str]]:
    """``(package, name)`` for every name of each installed plugin package's ``__all__``."""
    exports: list[tuple[str, str]] = []
    for package in PLUGIN_PACKAGES:
        try:
            module = importlib.import_module(package)
        except ImportError:  # a checkout that did not install this plugin distribution
            continue
        exports.extend((package, name) for name in sorted(module.__all__))
    return exports


@pytest.mark.parametrize(("package", "name"), plugin_exports(), ids="{0[0]}.{0[1]}".format)
def test_plugin_package_name_is_documented(
    package: str, name: str, anchors: set[str], repo_root: Path
) -> None:
    module = importlib.import_module(package)
    problems = undocumented([name], module, anchors, repo_root / "docs")
    assert not problems, (
        f"{package}.{problems[0]}. Render it in docs/reference/plugin-packages.md and give it "
        "a docstring."
    )


def test_hookspecs_are_found() -> None:
    # Guards the hook test below against silently checking nothing.
    assert "chanlog_register_backends" in hook_names()
    assert len(hook_names()) >= 7


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented(hook: str, anchors: set[str], repo_root: Path) -> None:
    path = f"chanlog.plugins.hookspecs.{hook}"
    assert path in anchors, f"hook {hook} is not rendered in docs/reference/plugins.md"
    assert inspect.getdoc(getattr(hookspecs, hook)), f"hook {hook} has no docstring"
    guide = (repo_root / PLUGIN_GUIDE).read_text(encoding="utf-8")
    assert f"`{hook}" in guide, f"hook {hook} is not explained in {PLUGIN_GUIDE}"


# -- the checker itself must be able to fail ---------------------------------------------


def test_checker_reports_a_name_missing_from_the_reference(tmp_path: Path) -> None:
    namespace = types.SimpleNamespace(EventStore=chanlog.EventStore)
    problems = undocumented(["EventStore"], namespace, {"chanlog.codec"}, tmp_path)
    assert problems == [
        "EventStore: not rendered in the API reference (looked for ['chanlog.store.EventStore'])"
    ]


def test_checker_reports_data_without_explanation(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text("The version is documented nowhere.\n")
    problems = undocumented(["__version__"], chanlog, {"chanlog.__version__"}, tmp_path)
    assert problems == ["__version__: no docstring, and no docs page mentions `__version__`"]
    (tmp_path / "page.md").write_text("`chanlog.__version__` is the version.\n")
    assert undocumented(["__version__"], chanlog, {"chanlog.__version__"}, tmp_path) == []


def test_checker_finds_where_plain_objects_are_bound() -> None:
    paths = canonical_paths("hookimpl", chanlog.hookimpl)
    assert "chanlog.plugins.hookspecs.hookimpl" in paths
    assert canonical_paths("EventStore", chanlog.EventStore) == {"chanlog.store.EventStore"}


def test_anchor_pattern_reads_mkdocstrings_headings() -> None:
    html = '<h2 id="chanlog.store.EventStore" class="doc"><a id="other"></a></h2>'
    assert ANCHOR.findall(html) == ["chanlog.store.EventStore"]


@pytest.mark.parametrize("event_class", BUILTIN_EVENT_TYPES, ids=lambda cls: cls.event_type)
def test_event_type_has_a_catalog_entry(event_class: type[chanlog.Event], repo_root: Path) -> None:
    catalog = (repo_root / "docs/architecture/event-types.md").read_text(encoding="utf-8")
    heading = f"### `{event_class.event_type}`"
    assert heading in catalog, f"docs/architecture/event-types.md lacks a '{heading}' section"
    section = catalog.split(heading, 1)[1].split("\n### ", 1)[0]
    for field in attrs.fields(event_class):
        if field.name not in ("event_version", "timestamp_ms"):
            assert f"| `{field.name}` |" in section, (
                f"{event_class.event_type}: field {field.name} missing from its catalog table"
            )
    assert f"chanlog.{event_class.__name__}(" in section, "the entry needs an example"
