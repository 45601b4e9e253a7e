"""The README's two commands are the ones CI runs (DEVELOPERS: README and CI contract)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_starts_with_what_chanlog_is_then_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```")
    assert "chanlog is" in text[:first_block]
    blocks = _bash_blocks()
    assert "chanlog demo" in blocks[0]
    assert "python3.11 -m venv .venv" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command() -> None:
    install, _, test = _bash_blocks()[1].rpartition(" && ")
    ci = (ROOT / ".ci" / "run").read_text()
    # CI adds only --quiet to the install; otherwise both commands appear verbatim.
    assert install.replace("pip install", "pip install --quiet") in ci
    assert test in ci.splitlines()
    assert "CHANLOG_TEST_POSTGRES_DSN" in ci and "CHANLOG_REQUIRE_POSTGRES=1" in ci
    for check in ("ruff format --check", "ruff check", "mypy", "mkdocs build --strict"):
        assert check in ci
