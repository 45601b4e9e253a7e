"""The shape of the package, enforced (issue 14, "Done when").

Each check reads the source of ``src/chanlog`` (with :mod:`ast`, never by importing it, so a
check cannot be fooled by what a module does at import time) and is parametrized by module,
so a failure names the module. Checks that fail today because a part of the rework has not
landed yet are ``xfail(strict=True, raises=AssertionError)`` for exactly the modules that
part rewrites, with a reason naming the part (a checker that crashes is no expected
failure). When the part lands the check passes, strict xfail turns that into a failure, and
the mark is removed. Every other module must pass now.

The checks:

- size: no module over 600 lines, ``store.py`` under 400;
- no import cycle, counting imports under ``TYPE_CHECKING`` and inside functions;
- no module uses another module's private names;
- ``exec`` / ``compile`` only in ``codegen.py``, the one code generator;
- the event-id prefix ``b"ev1|"`` only in ``hashing.py``, the one event-id function;
- no ``getattr`` / ``hasattr`` probing in the store and its parts;
- no function with a cyclomatic complexity over 15 (ruff's mccabe rule, C901);
- ``import chanlog`` stays light, and ``chanlog.__all__`` is a small, documented surface.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

import chanlog

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "chanlog"

# Modules a part of a rework still to land may leave failing a check, with the reason (each a
# strict xfail, so the mark must go when the part lands). Nothing is pending today.


def module_name(path: Path) -> str:
    """``src/chanlog/snapshots/manager.py`` -> ``chanlog.snapshots.manager``."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


@functools.cache
def tree(name: str) -> ast.Module:
    """The parsed source of a module."""
    path = modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def params(names: Iterable[str], pending: Mapping[str, str]) -> list[object]:
    """One ``pytest.param`` per module; those a pending part rewrites are strict xfails."""
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.xfail(strict=True, raises=AssertionError, reason=pending[name])],
        )
        if name in pending
        else pytest.param(name, id=name)
        for name in names
    ]


def test_pending_tables_name_existing_modules() -> None:
    """A part that renamed or removed a module must take it off its list too."""
    listed = {
        *PENDING_SIZE,
        *PENDING_PRIVATE,
        *PENDING_EXEC,
        *PENDING_EVENT_ID,
        *PENDING_GETATTR,
        *PENDING_COMPLEXITY,
        *(name for _, members in PENDING_CYCLES for name in members),
    }
    assert not listed - set(modules()), sorted(listed - set(modules()))


# -- size ------------------------------------------------------------------------------

MAX_LINES = 600
MAX_STORE_LINES = 400
PENDING_SIZE: dict[str, str] = {}


def line_count(name: str) -> int:
    return len(modules()[name].read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("name", params(modules(), PENDING_SIZE))
def test_module_is_at_most_600_lines(name: str) -> None:
    assert line_count(name) <= MAX_LINES, f"{name}: {line_count(name)} lines"


def test_store_is_under_400_lines() -> None:
    assert line_count("chanlog.store") < MAX_STORE_LINES


# -- import cycles ---------------------------------------------------------------------


def imported_modules(name: str) -> set[str]:
    """The package's modules that ``name`` imports anywhere: at the top, under
    ``TYPE_CHECKING``, inside functions.

    ``from package import name`` counts as importing the submodule ``package.name`` when
    there is one, else the package itself (its ``__init__``). The implicit import of a
    module's parent packages is not counted: every module of a subpackage would otherwise
    "import" its own ``__init__``, which Python resolves without trouble.
    """
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules())
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules():
                    found.add(submodule)
                elif base in modules():
                    found.add(base)
    found.discard(name)
    return found


def resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module name of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module, i.e. the
    import cycles, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


@functools.cache
def import_cycles() -> tuple[tuple[str, ...], ...]:
    graph = {name: imported_modules(name) for name in modules()}
    return tuple(tuple(cycle) for cycle in strongly_connected(graph))


PENDING_CYCLES: tuple[tuple[str, frozenset[str]], ...] = ()


def test_no_new_import_cycle() -> None:
    """Whatever cycles remain lie within those a pending part removes; no new one appears."""
    unexpected = [
        cycle
        for cycle in import_cycles()
        if not any(set(cycle) <= members for _, members in PENDING_CYCLES)
    ]
    assert not unexpected, f"import cycles: {unexpected}"


@pytest.mark.parametrize(
    "members",
    [
        pytest.param(
            members,
            id=reason.split(" (")[0].removeprefix("lands with the "),
            marks=[pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)],
        )
        for reason, members in PENDING_CYCLES
    ],
)
def test_no_import_cycle_through(members: frozenset[str]) -> None:
    cycles = [cycle for cycle in import_cycles() if set(cycle) & members]
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    node = ast.parse("from ..base import x").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert resolve(node, "chanlog.snapshots") == "chanlog.base"


# -- private names across modules ------------------------------------------------------

PRIVATE = re.compile(r"^_[a-z][A-Za-z0-9_]*$")
PENDING_PRIVATE: dict[str, str] = {}


def private_uses(name: str) -> list[str]:
    """Where module ``name`` uses a private name of another module (see
    :func:`private_uses_in`)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return private_uses_in(tree(name), package, set(modules()))


def private_uses_in(module: ast.Module, package: str, known: set[str]) -> list[str]:
    """Where ``module`` (of ``package``) uses a private name (``_x``, not a dunder) of
    another module of ``known``.

    - ``from chanlog.other import _x`` is one, unless ``_x`` is a private *module* of the
      importer's own package (``events/base.py`` importing ``events/_fastinit``);
    - ``imported._x``, where ``imported`` was imported from another chanlog module, is one;
    - ``anything._x`` is one when no code of this module defines ``_x`` (as an attribute it
      assigns, a function, class, name or slot): ``store._lock`` in the snapshot manager
      is. ``self._x`` and ``cls._x`` are the class's own; a module's own privates
      (``self._backend._lock`` in the memory backend) are its own business.

    This is the ``\\._[a-z]`` grep of issue 14 done on the syntax tree, so strings,
    comments and docstrings do not count, and no allow-list is needed today.
    """
    imported: dict[str, str] = {}
    defined: set[str] = set()
    problems: list[str] = []
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node, package)
            for alias in node.names:
                imported[alias.asname or alias.name] = base
                own_private_module = f"{base}.{alias.name}" in known and (
                    package == base or package.startswith(base + ".")
                )
                if (
                    base.startswith("chanlog")
                    and PRIVATE.match(alias.name)
                    and not own_private_module
                ):
                    problems.append(f"line {node.lineno}: imports {alias.name} from {base}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            defined.add(node.value)  # __slots__ entries
    for node in ast.walk(module):
        if not (isinstance(node, ast.Attribute) and PRIVATE.match(node.attr)):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Name) and value.id in imported:
            if imported[value.id].startswith("chanlog"):
                problems.append(f"line {node.lineno}: {ast.unparse(node)}")
            continue
        if node.attr not in defined:
            problems.append(f"line {node.lineno}: {ast.unparse(node)}")
    return problems


@pytest.mark.parametrize("name", params(modules(), PENDING_PRIVATE))
def test_no_private_names_of_other_modules(name: str) -> None:
    assert not private_uses(name), f"{name}: {private_uses(name)}"


def test_the_private_name_check_finds_a_friend_class() -> None:
    source = (
        "from chanlog.store import EventStore, _helper\n"
        "from chanlog import codec\n"
        "from chanlog.events import _fastinit\n"
        "class Manager:\n"
        "    def __init__(self, store):\n"
        "        self._store = store\n"
        "        self._own = 1\n"
        "    def peek(self, other):\n"
        "        return self._store._lock, codec._encode, other._own, _fastinit.build\n"
    )
    known = {"chanlog.store", "chanlog.codec", "chanlog.events", "chanlog.events._fastinit"}
    assert private_uses_in(ast.parse(source), "chanlog.events", known) == [
        "line 1: imports _helper from chanlog.store",
        "line 9: self._store._lock",
        "line 9: codec._encode",
    ]
    # The same private module, imported from another package, is someone else's.
    assert private_uses_in(ast.parse(source), "chanlog.snapshots", known)[1] == (
        "line 3: imports _fastinit from chanlog.events"
    )


# -- one code generator, one event-id function -----------------------------------------

CODEGEN = "chanlog.codegen"
PENDING_EXEC: dict[str, str] = {}


def calls_to(name: str, functions: frozenset[str]) -> list[str]:
    """Calls of the builtins ``functions`` (by bare name) in module ``name``."""
    return [
        f"line {node.lineno}: {node.func.id}(...)"
        for node in ast.walk(tree(name))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in functions
    ]


@pytest.mark.parametrize("name", params(sorted(set(modules()) - {CODEGEN}), PENDING_EXEC))
def test_exec_and_compile_only_in_codegen(name: str) -> None:
    found = calls_to(name, frozenset({"exec", "compile"}))
    assert not found, f"{name}: {found} (generate code through {CODEGEN})"


EVENT_ID_PREFIX = b"ev1|"
HASHING = "chanlog.hashing"
PENDING_EVENT_ID: dict[str, str] = {}


def event_id_prefixes(name: str) -> list[str]:
    """Byte literals that spell the event-id prefix (docstrings may quote it: they are text)."""
    return [
        f"line {node.lineno}"
        for node in ast.walk(tree(name))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, bytes)
        and node.value.startswith(EVENT_ID_PREFIX)
    ]


@pytest.mark.parametrize("name", params(sorted(set(modules()) - {HASHING}), PENDING_EVENT_ID))
def test_event_id_prefix_only_in_hashing(name: str) -> None:
    found = event_id_prefixes(name)
    assert not found, f"{name}: b'ev1|' at {found} (compute ids with {HASHING})"


# -- no probing in the store and its parts ---------------------------------------------

STORE_PARTS = ("appending", "reading", "folding", "delivery", "verification", "reconstruct")
PENDING_GETATTR: dict[str, str] = {}


def is_store_part(name: str) -> bool:
    """The store, its parts (top-level modules or a ``chanlog.store`` package), the
    snapshots, and reconstruction."""
    return (
        name == "chanlog.store"
        or name.startswith(("chanlog.store.", "chanlog.snapshots"))
        or name in {f"chanlog.{part}" for part in STORE_PARTS}
    )


def probes(name: str) -> list[str]:
    """``getattr`` / ``hasattr`` calls, except reading a dunder (``__qualname__`` of a
    callback names it; it asks no backend or projection what it can do)."""
    found = []
    for node in ast.walk(tree(name)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
        ):
            continue
        attribute = node.args[1] if len(node.args) > 1 else None
        if (
            isinstance(attribute, ast.Constant)
            and isinstance(attribute.value, str)
            and attribute.value.startswith("__")
            and attribute.value.endswith("__")
        ):
            continue
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize(
    "name", params([m for m in modules() if is_store_part(m)], PENDING_GETATTR)
)
def test_no_getattr_probing_in_the_store(name: str) -> None:
    found = probes(name)
    assert not found, f"{name}: {found} (resolve optional capabilities with a Protocol)"


def test_the_store_parts_are_checked() -> None:
    checked = {name for name in modules() if is_store_part(name)}
    assert {"chanlog.store", "chanlog.reconstruct", "chanlog.snapshots.manager"} <= checked
    assert "chanlog.backends.sqlite" not in checked


# -- complexity ------------------------------------------------------------------------

MAX_COMPLEXITY = 15
PENDING_COMPLEXITY: dict[str, str] = {}


@functools.cache
def too_complex() -> dict[str, list[str]]:
    """ruff's mccabe check (C901) over the package: module -> the functions over 15."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={MAX_COMPLEXITY}",
            "--output-format",
            "json",
            str(SRC),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    found: dict[str, list[str]] = {}
    for violation in json.loads(result.stdout):
        name = module_name(Path(violation["filename"]))
        found.setdefault(name, []).append(violation["message"])
    return found


def test_no_function_is_too_complex_outside_pending_parts() -> None:
    offending = {
        name: found for name, found in too_complex().items() if name not in PENDING_COMPLEXITY
    }
    assert not offending, offending


@pytest.mark.parametrize("name", params(sorted(PENDING_COMPLEXITY), PENDING_COMPLEXITY))
def test_no_function_is_too_complex_in(name: str) -> None:
    assert name not in too_complex(), too_complex().get(name)


# -- import chanlog, and its surface ---------------------------------------------------

HEAVY = ("sqlite3", "_sqlite3", "click", "rich", "chanlog.workload", "chanlog.cli")


def modules_loaded_by(statement: str) -> set[str]:
    """``sys.modules`` after ``statement`` in a fresh interpreter (without coverage, which
    would load sqlite3 for its own data file)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COV_CORE_", "COVERAGE_"))
    }
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_import_chanlog_is_light() -> None:
    loaded = modules_loaded_by("import chanlog")
    heavy = sorted(
        name for name in loaded if any(name == h or name.startswith(h + ".") for h in HEAVY)
    )
    assert not heavy, f"import chanlog loads {heavy}"
    assert "chanlog.backends.sqlite" not in loaded


def test_the_sqlite_backend_still_loads_on_use() -> None:
    loaded = modules_loaded_by(
        "import tempfile, os, chanlog\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    chanlog.open(backend={'name': 'sqlite', 'path': os.path.join(d, 'x.db')}).close()"
    )
    assert {"sqlite3", "chanlog.backends.sqlite"} <= loaded


MAX_PUBLIC_NAMES = 60


def test_the_surface_is_small() -> None:
    assert len(chanlog.__all__) <= MAX_PUBLIC_NAMES, len(chanlog.__all__)
    assert len(set(chanlog.__all__)) == len(chanlog.__all__)


@pytest.mark.parametrize("name", sorted(chanlog.__all__))
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(chanlog, name)
    assert (inspect.getdoc(obj) or "").strip(), f"chanlog.{name} has no docstring"


def test_dir_shows_exactly_the_surface() -> None:
    # Submodules become attributes of the package when imported; they are not the surface.
    public = {
        name
        for name in dir(chanlog)
        if not name.startswith("_") and not isinstance(getattr(chanlog, name), types.ModuleType)
    }
    assert public == set(chanlog.__all__), {
        "not in __all__": sorted(public - set(chanlog.__all__)),
        "missing": sorted(set(chanlog.__all__) - public),
    }


# -- the architecture map ----------------------------------------------------------------


def test_the_architecture_map_names_every_module() -> None:
    """docs/architecture/README.md maps every module of src/chanlog (a name or a glob)."""
    text = (ROOT / "docs" / "architecture" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z0-9_/*.]+\.py)`", text))
    unmapped = [
        relative
        for relative in (path.relative_to(SRC).as_posix() for path in sorted(SRC.rglob("*.py")))
        if not any(fnmatch.fnmatchcase(relative, pattern) for pattern in named)
    ]
    assert not unmapped, f"modules missing from the architecture map: {unmapped}"
