"""The command line the docs show is the one ``chanlog`` has.

- Every command, subcommand and option of ``chanlog`` is in the CLI reference page
  (``docs/reference/cli.md``, built), so a reader finds what ``chanlog COMMAND --help`` says.
- Every ``$ chanlog ...`` line of a console block in README.md and docs/ (the ADRs excepted:
  they record what was decided then) names commands and options that exist. What the
  commands print is not compared here: the guides quote it from runs on other logs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from chanlog.cli import cli
from docs.test_code_blocks import markdown_files, parse_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE = frozenset({"console", "sh", "shell", "bash"})
COMMAND_LINE = re.compile(r"^\$\s+(?:[A-Z_]+=\S*\s+)*chanlog(?:\s|$)")


def command_paths(
    command: click.Command = cli, path: tuple[str, ...] = ("chanlog",)
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree under ``command``, with the words that call it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from command_paths(sub, (*path, name))


def long_options(command: click.Command) -> set[str]:
    """The ``--name`` spellings of every option ``command`` takes (``--help`` included)."""
    return {name for name in takes_value(command) if name.startswith("--")}


def takes_value(command: click.Command) -> dict[str, bool]:
    """Every spelling of every option of ``command``, and whether a value follows it."""
    spellings = {}
    # The help option's spellings (-h, --help) are the group's context settings.
    context = click.Context(command, parent=click.Context(cli, **cli.context_settings))
    for param in command.get_params(context):
        if isinstance(param, click.Option):
            for name in param.opts:
                spellings[name] = not param.is_flag and not param.count
            for name in param.secondary_opts:
                spellings[name] = False
    return spellings


def shown_command_lines(root: Path) -> Iterator[tuple[str, str]]:
    """``(where, line)`` for every ``$ chanlog ...`` line of a console block."""
    for page in markdown_files(root):
        relative = page.relative_to(root).as_posix()
        if relative.startswith("docs/adrs/"):
            continue
        for block in parse_blocks(page.read_text(encoding="utf-8"), relative):
            if block.lang not in CONSOLE:
                continue
            for number, line in enumerate(block.code.splitlines()):
                if COMMAND_LINE.match(line):
                    yield f"{relative}:{block.line + number}", line


def problems_of(line: str) -> list[str]:
    """What of ``line`` (``$ chanlog ...``) names no command or option of ``chanlog``."""
    words = shlex.split(line[1:], comments=True)
    for separator in ("&&", "|", ";"):
        if separator in words:
            words = words[: words.index(separator)]
    start = next(i for i, word in enumerate(words) if word == "chanlog") + 1
    command: click.Command = cli
    options = takes_value(cli)
    problems = []
    remaining = iter(words[start:])
    for word in remaining:
        if word.startswith("-"):
            name = word.split("=")[0]
            if name not in options and not command.context_settings.get("allow_extra_args"):
                known = sorted(n for n in options if n.startswith("--"))
                problems.append(f"{name}: no such option ({known})")
            elif options.get(name, True) and "=" not in word:
                next(remaining, None)  # the option's value (an extra option's too)
        elif isinstance(command, click.Group):
            if word not in command.commands:
                return [*problems, f"{word!r}: no such command ({sorted(command.commands)})"]
            command = command.commands[word]
            options = takes_value(command)
    return problems


def test_every_command_and_option_is_in_the_cli_reference(built_site: Path) -> None:
    page = (built_site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", page)
    missing = [
        f"{' '.join(path)} {option}".strip()
        for path, command in command_paths()
        for option in ["", *sorted(long_options(command))]
        if " ".join(path) not in text or (option and option not in text)
    ]
    assert missing == []


def test_console_blocks_are_found() -> None:
    # Guards the test below against checking nothing.
    lines = [line for _, line in shown_command_lines(REPO_ROOT)]
    assert len(lines) > 30
    assert any("consumers replay" in line for line in lines)


@pytest.mark.parametrize(
    ("where", "line"), list(shown_command_lines(REPO_ROOT)), ids=lambda value: value
)
def test_shown_command_exists(where: str, line: str) -> None:
    assert problems_of(line) == [], f"{where}: {line}"


def test_checker_reports_a_wrong_option_and_command() -> None:
    assert problems_of("$ chanlog log --entity 0x12 --limit 3   # fine") == []
    assert problems_of("$ X=1 chanlog consumers reset audit --to 0") == []
    assert problems_of("$ chanlog export a.jsonl && chanlog import a.jsonl") == []
    # ingest hands options it does not know to its source
    assert problems_of("$ chanlog ingest nats --stream NODE_A --durable replica-1") == []
    assert problems_of("$ chanlog log --last 3") == [
        "--last: no such option (['--entity', '--follow', '--from', '--help', '--json', "
        "'--limit', '--to', '--type'])"
    ]
    assert problems_of("$ chanlog consumers rest audit") == [
        "'rest': no such command (['drop', 'parked', 'replay', 'reset'])"
    ]
    assert problems_of("$ chanlog verfiy")[0].startswith("'verfiy': no such command")
