"""Every ADR has the template's shape and is listed in the ADR index with its exact title."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ADR_DIR = Path(__file__).resolve().parents[2] / "docs" / "adrs"
FILE_NAME = re.compile(r"^(?P<number>\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md$")
TITLE = re.compile(r"^# (?P<number>\d{4})\. (?P<title>\S.*)$")
STATUS = re.compile(r"^Status: (accepted|proposed|deprecated|superseded by \d{4})$")
DATE = re.compile(r"^Date: \d{4}-\d{2}-\d{2}$")
SECTIONS = ("## Context", "## Decision", "## Consequences")


def adr_files(directory: Path) -> list[Path]:
    """Every numbered ADR file (everything in the folder but the index)."""
    return sorted(path for path in directory.glob("*.md") if path.name != "README.md")


def shape_problems(path: Path) -> list[str]:
    """Why ``path`` does not follow docs/adr-template.md (empty when it does)."""
    problems = []
    name = FILE_NAME.match(path.name)
    if name is None:
        return [f"{path.name}: file name must be NNNN-kebab-title.md"]
    lines = path.read_text(encoding="utf-8").splitlines()
    title = TITLE.match(lines[0]) if lines else None
    if title is None:
        problems.append(f"{path.name}: first line must be '# NNNN. Title'")
    elif title["number"] != name["number"]:
        problems.append(f"{path.name}: title number {title['number']} differs from the file's")
    header = [line for line in lines[1:6] if line.strip()]
    if len(header) < 2 or not STATUS.match(header[0]) or not DATE.match(header[1]):
        problems.append(f"{path.name}: 'Status: ...' and 'Date: YYYY-MM-DD' must follow the title")
    headings = [line.strip() for line in lines if line.startswith("## ")]
    if headings[:3] != list(SECTIONS):
        problems.append(f"{path.name}: sections must be {', '.join(SECTIONS)} (got {headings})")
    return problems


def index_problems(directory: Path) -> list[str]:
    """ADRs missing from README.md, or listed with another title."""
    index = (directory / "README.md").read_text(encoding="utf-8")
    problems = []
    for path in adr_files(directory):
        title = TITLE.match(path.read_text(encoding="utf-8").splitlines()[0])
        if title is None:
            continue  # reported by the shape check
        row = f"| [{title['number']}]({path.name}) | {title['title']} |"
        if row not in index:
            problems.append(f"README.md lacks the row {row!r}")
    return problems


@pytest.mark.parametrize("path", adr_files(ADR_DIR), ids=lambda path: path.name)
def test_adr_follows_the_template(path: Path) -> None:
    assert shape_problems(path) == []


def test_index_lists_every_adr() -> None:
    assert index_problems(ADR_DIR) == []


def test_adr_numbers_are_unique() -> None:
    numbers = [path.name[:4] for path in adr_files(ADR_DIR)]
    assert len(numbers) == len(set(numbers))
    assert {"0001", "0002", "0003", "0004", "0005"} <= set(numbers)


def test_checks_catch_a_malformed_adr(tmp_path: Path) -> None:
    (tmp_path / "0042-sloppy.md").write_text(
        "# 0041. Wrong number\n\nStatus: maybe\n\n## Context\n"
    )
    (tmp_path / "Notes.md").write_text("# notes\n")
    (tmp_path / "README.md").write_text("| ADR | decision |\n")
    sloppy, notes = tmp_path / "0042-sloppy.md", tmp_path / "Notes.md"
    assert shape_problems(notes) == ["Notes.md: file name must be NNNN-kebab-title.md"]
    problems = shape_problems(sloppy)
    assert len(problems) == 3
    assert "title number 0041" in problems[0]
    assert "Status" in problems[1]
    assert "sections must be" in problems[2]


def test_index_check_catches_a_missing_row(tmp_path: Path) -> None:
    (tmp_path / "0042-good.md").write_text("# 0042. A title\n")
    (tmp_path / "README.md").write_text("| [0042](0042-good.md) | Another title |\n")
    assert index_problems(tmp_path) == [
        "README.md lacks the row '| [0042](0042-good.md) | A title |'"
    ]
