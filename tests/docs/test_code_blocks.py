"""Every ```python block in docs/**/*.md and README.md runs, and passes.

Rules (the decision is ADR 0017, docs/adrs/0017-documentation-that-runs.md):

- The blocks of one file run in order, in one namespace, in a fresh temporary working
  directory that is importable (as is its ``src/`` folder, as after ``pip install -e .``).
- ``<!-- docs-test: skip: REASON -->`` right before a block (blank lines allowed in between)
  skips it; the reason is required. Use it only for what cannot run in a test.
- ``<!-- docs-test: file PATH -->`` right before a block of any language writes the block to
  ``PATH`` in the working directory instead of running it (a plugin module, a chanlog.toml).
- Fences may be indented (inside a list item); the indent is removed before running.
- Any other ``docs-test`` comment, or a marker not followed by a block, is an error; so is
  a line of two backticks (with or without a language), a fence one backtick short.

The process-wide plugin host is reset around each file, so a file's plugins do not leak.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from chanlog.events import BUILTIN_EVENT_TYPES
from chanlog.plugins import reset_default_host

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = frozenset({"python", "py"})
MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
SHORT_FENCE = re.compile(r"^ *``(?!`)[\w-]*\s*$")
"""A line that looks like a fence of two backticks: Markdown renders what follows as inline
code on one line, and nothing in it runs (issue 18 item 9)."""


class DocsMarkupError(Exception):
    """A docs-test marker is malformed or not followed by a code block."""


@attrs.frozen
class Block:
    """One fenced code block of a Markdown file."""

    path: str
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    action: str = "run"  # "run", "skip" or "file"
    target: str | None = None  # the file to write, for action "file"
    reason: str | None = None  # why, for action "skip"


def _parse_marker(body: str, where: str) -> tuple[str, str]:
    body = body.strip()
    if body.startswith("skip:") and body[5:].strip():
        return "skip", body[5:].strip()
    if body.startswith("file ") and body[5:].strip():
        return "file", body[5:].strip()
    raise DocsMarkupError(
        f"{where}: unknown docs-test marker {body!r}; use 'skip: REASON' or 'file PATH'"
    )


def parse_blocks(text: str, path: str) -> list[Block]:
    """Every fenced code block of ``text`` with the marker that precedes it, if any."""
    blocks: list[Block] = []
    lines = text.splitlines()
    pending: tuple[str, str, int] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line)
        fence = FENCE.match(line)
        if SHORT_FENCE.match(line):
            raise DocsMarkupError(
                f"{path}:{index + 1}: {line.strip()!r} is a fence of two backticks; a code "
                "block needs three"
            )
        if marker:
            if pending is not None:
                raise DocsMarkupError(f"{path}:{pending[2]}: docs-test marker without a block")
            action, argument = _parse_marker(marker["body"], f"{path}:{index + 1}")
            pending = (action, argument, index + 1)
        elif fence:
            opening = fence["fence"]
            body: list[str] = []
            end = index + 1
            while end < len(lines):
                candidate = lines[end].strip()
                if candidate.startswith(opening) and set(candidate) == {opening[0]}:
                    break
                body.append(lines[end])
                end += 1
            else:
                raise DocsMarkupError(f"{path}:{index + 1}: code fence is never closed")
            indent = len(fence["indent"])
            code = "\n".join(text_line[indent:] for text_line in body) + "\n"
            action, argument = ("run", "") if pending is None else pending[:2]
            blocks.append(
                Block(
                    path=path,
                    line=index + 2,
                    lang=fence["info"].lower(),
                    code=code,
                    action=action,
                    target=argument if action == "file" else None,
                    reason=argument if action == "skip" else None,
                )
            )
            pending = None
            index = end
        elif line.strip() and pending is not None:
            raise DocsMarkupError(f"{path}:{pending[2]}: docs-test marker without a block")
        index += 1
    if pending is not None:
        raise DocsMarkupError(f"{path}:{pending[2]}: docs-test marker without a block")
    return blocks


def markdown_files(root: Path) -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    files = sorted((root / "docs").rglob("*.md"))
    readme = root / "README.md"
    return ([readme] if readme.exists() else []) + files


def _relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def _has_python(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    try:
        parse_blocks(text, _relative(path))
    except DocsMarkupError:
        return True  # collected, so that its test reports the markup error
    return any(
        block.lang in RUNNABLE or block.action == "file"
        for block in parse_blocks(text, _relative(path))
    )


def run_blocks(blocks: list[Block], workdir: Path) -> int:
    """Run (or write) ``blocks`` in ``workdir`` in one namespace; return how many ran.

    Line numbers in tracebacks are those of the Markdown file.
    """
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks:
        if block.action == "file":
            assert block.target is not None
            target = workdir / block.target
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            # A module written while the test runs is found only once the import system
            # forgets what it listed of these folders before (see importlib.invalidate_caches).
            importlib.invalidate_caches()
            continue
        if block.action == "skip" or block.lang not in RUNNABLE:
            continue
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, block.path, "exec"), namespace)
        ran += 1
    return ran


@pytest.fixture
def docs_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, importable working directory; modules imported from it are forgotten after."""
    monkeypatch.chdir(tmp_path)
    # Made now: a folder on sys.path that does not exist yet is remembered as holding no
    # module (None in sys.path_importer_cache) by the first import that looks there, and
    # the file blocks write their package into it later. Whether an import happened in
    # between depended on what the tests before had imported: run alone, with coverage,
    # docs/guides/writing-plugins.md failed with "No module named 'chanlog_fees'".
    (tmp_path / "src").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    reset_default_host()
    try:
        yield tmp_path
    finally:
        reset_default_host()
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(tmp_path)):
                del sys.modules[name]


DOC_FILES = [path for path in markdown_files(REPO_ROOT) if _has_python(path)]


@pytest.mark.parametrize("path", DOC_FILES, ids=_relative)
def test_python_blocks_run(path: Path, docs_workdir: Path) -> None:
    blocks = parse_blocks(path.read_text(encoding="utf-8"), _relative(path))
    run_blocks(blocks, docs_workdir)


def test_every_docs_file_parses() -> None:
    # A malformed marker anywhere (even in a file without Python) is an error.
    for path in markdown_files(REPO_ROOT):
        parse_blocks(path.read_text(encoding="utf-8"), _relative(path))


def test_runnable_examples_are_collected() -> None:
    names = {_relative(path) for path in DOC_FILES}
    assert "docs/index.md" in names
    assert "docs/guides/using-event-store.md" in names


def test_every_event_type_has_a_runnable_example() -> None:
    path = REPO_ROOT / "docs/architecture/event-types.md"
    blocks = parse_blocks(path.read_text(encoding="utf-8"), _relative(path))
    runnable = "".join(b.code for b in blocks if b.lang in RUNNABLE and b.action == "run")
    missing = [
        cls.__name__
        for cls in BUILTIN_EVENT_TYPES
        if f"chanlog.{cls.__name__}(" not in runnable
        or f"assert event.event_type == {cls.event_type!r}" not in runnable
    ]
    assert missing == []


# -- the harness itself ------------------------------------------------------------------

SAMPLE = """\
# Title

```python
x = 1
```

<!-- docs-test: skip: needs a live PostgreSQL -->

```python
raise SystemExit("never runs")
```

<!-- docs-test: file pkg/mod.py -->
```python
VALUE = 41
```

    ```python
    import pkg.mod
    y = x + pkg.mod.VALUE
    ```

````markdown
```python
nested fences are text
```
````

```console
$ chanlog verify
```
"""


def test_parser_reads_blocks_markers_and_lines() -> None:
    blocks = parse_blocks(SAMPLE, "sample.md")
    assert [(b.lang, b.action, b.line) for b in blocks] == [
        ("python", "run", 4),
        ("python", "skip", 10),
        ("python", "file", 15),
        ("python", "run", 19),
        ("markdown", "run", 24),
        ("console", "run", 30),
    ]
    assert blocks[1].reason == "needs a live PostgreSQL"
    assert blocks[2].target == "pkg/mod.py"
    assert blocks[3].code == "import pkg.mod\ny = x + pkg.mod.VALUE\n"
    assert blocks[4].code == "```python\nnested fences are text\n```\n"


def test_runner_shares_a_namespace_and_writes_files(docs_workdir: Path) -> None:
    ran = run_blocks(parse_blocks(SAMPLE, "sample.md"), docs_workdir)
    assert ran == 2
    assert (docs_workdir / "pkg" / "mod.py").read_text() == "VALUE = 41\n"


WRITES_THEN_IMPORTS = """
<!-- docs-test: file src/late_pkg/__init__.py -->
```python
VALUE = 42
```

```python
import late_pkg

assert late_pkg.VALUE == 42
```
"""


def test_a_package_written_after_an_import_looked_for_it_is_found(docs_workdir: Path) -> None:
    # What an earlier import found of the folders on sys.path (nothing) must not hide a
    # package a file block writes later: run alone with coverage, the plugin guide failed
    # with "No module named 'chanlog_fees'" (an import looked while src/ did not exist).
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("late_pkg")
    assert run_blocks(parse_blocks(WRITES_THEN_IMPORTS, "late.md"), docs_workdir) == 1


def test_runner_reports_the_markdown_line_of_a_failure(docs_workdir: Path) -> None:
    text = "Intro\n\n```python\nok = True\nassert not ok, 'the example is wrong'\n```\n"
    with pytest.raises(AssertionError, match="the example is wrong") as info:
        run_blocks(parse_blocks(text, "page.md"), docs_workdir)
    frame = info.traceback[-1]
    assert (str(frame.path), frame.lineno + 1) == ("page.md", 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs-test: skip -->\n```python\npass\n```\n", "unknown docs-test marker"),
        ("<!-- docs-test: ignore -->\n```python\npass\n```\n", "unknown docs-test marker"),
        ("<!-- docs-test: skip: why -->\nSome prose.\n", "marker without a block"),
        ("text\n<!-- docs-test: file a.py -->\n", "marker without a block"),
        ("```python\nnever closed\n", "never closed"),
        ("Intro\n\n``python\nx = 1\n``\n", "two backticks"),
        ("``\nx = 1\n``\n", "two backticks"),
    ],
)
def test_parser_refuses_bad_markup(text: str, message: str) -> None:
    with pytest.raises(DocsMarkupError, match=message):
        parse_blocks(text, "bad.md")
