"""``init``: write a commented chanlog.toml listing what is installed."""

from __future__ import annotations

from pathlib import Path

import click

from chanlog.cli.app import CliContext, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.config import CONFIG_FILENAME, DEFAULT_SQLITE_PATH
from chanlog.plugins import default_host

__all__ = ["init_command", "render_config"]


def _names(registry: object) -> str:
    return ", ".join(sorted(registry)) or "none"  # type: ignore[call-overload]


def render_config(*, backend: str, path: str, serializer: str, snapshot_every: int) -> str:
    """The text of a new chanlog.toml: every setting with a comment saying what it does."""
    host = default_host()
    backend_lines = [f'name = "{backend}"']
    if backend == "sqlite":
        backend_lines += [
            "# The SQLite file, relative to this file's directory.",
            f'path = "{path}"',
            '# "full": fsync at every commit, an acknowledged event survives power loss.',
            '# "normal": no fsync; an acknowledged event survives a crash of the process.',
            'durability = "full"',
        ]
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
            "",
        ]
    )


@click.command("init")
@click.argument(
    "path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=CONFIG_FILENAME,
)
@click.option("--backend", default="sqlite", show_default=True, help="Registered backend name.")
@click.option(
    "--db-path", default=DEFAULT_SQLITE_PATH, show_default=True, help="SQLite file of the log."
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
