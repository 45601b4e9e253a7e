"""``init``: write a commented chanlog.toml listing what is installed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from chanlog.cli.app import CliContext, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.config import CONFIG_FILENAME, DEFAULT_BACKEND, DEFAULT_LOG_FILE, file_option_of
from chanlog.plugins import default_host
from chanlog.snapshots.policies import DEFAULT_KEEP

__all__ = ["init_command", "render_config"]


def _names(registry: object) -> str:
    return ", ".join(sorted(registry)) or "none"  # type: ignore[call-overload]


OPEN_MODES = frozenset({"read_only", "create"})
"""Factory parameters that say how one open behaves, not how a node is configured."""


def render_config(*, backend: str, path: str, serializer: str, snapshot_every: int) -> str:
    """The text of a new chanlog.toml: every setting with a comment saying what it does.

    The ``[backend]`` table is written from what the backend's factory declares: its log
    file (``path`` for a :class:`~chanlog.factories.FileBackedFactory`), then each further option
    commented out at its default, so a plugin's backend gets the same treatment as SQLite.
    """
    host = default_host()
    factory = host.backends[backend]
    file_option = file_option_of(factory)
    backend_lines = [f'name = "{backend}"']
    if file_option is not None:
        backend_lines += [
            "# The log's file, relative to this file's directory.",
            f"{file_option} = {_toml_value(path)}",
        ]
    parameters = [
        parameter
        for parameter in _keyword_parameters(factory)
        if parameter.name != file_option and parameter.name not in OPEN_MODES
    ]
    unset = [_commented_option(p) for p in parameters if p.default in _NO_DEFAULT]
    options = [_commented_option(p) for p in parameters if p.default not in _NO_DEFAULT]
    if unset:
        backend_lines += [f"# Options of the {backend} backend without a default: set them."]
        backend_lines += unset
    if options:
        backend_lines += [f"# Options of the {backend} backend (the values shown are defaults):"]
        backend_lines += options
    return "\n".join(
        [
            "# chanlog configuration, read by the `chanlog` command (from this directory, or",
            '# with --config FILE) and by chanlog.open("chanlog.toml"). Unknown keys are errors.',
            "",
            "# How payloads are stored at rest. Event ids are keccak256 over canonical JSON",
            f"# whatever the serializer. Installed: {_names(host.serializers)}.",
            f'serializer = "{serializer}"',
            "",
            "# Projections folded inline; they validate every append. Default: all registered.",
            f"# Installed: {_names(host.projections)}.",
            '# projections = ["objective", "channel", "messages"]',
            "",
            "[backend]",
            f"# Where the log lives. Installed backends: {_names(host.backends)}.",
            *backend_lines,
            "",
            "[snapshots]",
            "# When to snapshot the projections, so restarts and time travel replay only a tail.",
            f"# Installed policies: {_names(host.snapshot_policies)}.",
            'policy = "every-n-events"',
            "# Events between two snapshots.",
            f"n = {snapshot_every}",
            "# Snapshots kept: the latest ones, then about one per doubling of age (0: all).",
            f"keep = {DEFAULT_KEEP}",
            "# Write only what changed since the last snapshot (false: every snapshot whole).",
            "incremental = true",
            "",
        ]
    )


def _keyword_parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The options a factory's signature names (none when it has no signature)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [parameter for parameter in parameters if parameter.kind in keyword]


_NO_DEFAULT = (inspect.Parameter.empty, None)
"""A parameter default that gives the option no value: the option must be set (the
PostgreSQL ``dsn``)."""


def _commented_option(parameter: inspect.Parameter) -> str:
    """``# name = default``; an option without a default shows an empty string, to be
    filled in (the PostgreSQL ``dsn``)."""
    default = parameter.default
    if default in _NO_DEFAULT:
        return f'# {parameter.name} = ""'
    return f"# {parameter.name} = {_toml_value(default)}"


def _toml_value(value: object) -> str:
    """A TOML literal for a plain default (strings are written as JSON strings, which TOML
    basic strings read the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(str(value)).decode()


@click.command("init")
@click.argument(
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=CONFIG_FILENAME,
)
@click.option(
    "--backend", default=DEFAULT_BACKEND, show_default=True, help="Registered backend name."
)
@click.option(
    "--db-path",
    default=DEFAULT_LOG_FILE,
    show_default=True,
    help="The log's file, for a backend that keeps one.",
)
@click.option("--serializer", default="json", show_default=True, help="Payload serializer.")
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events between snapshots.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_cli
def init_command(
    state: CliContext,
    path: Path,
    backend: str,
    db_path: str,
    serializer: str,
    snapshot_every: int,
    force: bool,
) -> None:
    """Write a commented chanlog.toml (default: ./chanlog.toml)."""
    host = default_host()
    for option, value, registry in (
        ("--backend", backend, host.backends),
        ("--serializer", serializer, host.serializers),
    ):
        if value not in registry:
            raise CliError(
                f"{option} {value!r}: not installed (installed: {_names(registry)})",
                ExitCode.USAGE,
            )
    if path.exists() and not force:
        raise CliError(f"{path} already exists (use --force to overwrite)", ExitCode.USAGE)
    text = render_config(
        backend=backend,
        path=db_path.replace("\\", "/"),
        serializer=serializer,
        snapshot_every=snapshot_every,
    )
    path.write_text(text, encoding="utf-8")
    state.output.note(f"wrote {path}")
