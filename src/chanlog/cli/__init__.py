"""The ``chanlog`` command line (console script ``chanlog = "chanlog.cli:main"``).

Exit codes are documented in :mod:`chanlog.cli.errors`; user errors print one line on
stderr, never a traceback.
"""

from __future__ import annotations

from chanlog.cli.app import cli
from chanlog.cli.commands.bus import consumers_command, ingest_command, run_command
from chanlog.cli.commands.entities import demo_command, show_command, snapshot_command
from chanlog.cli.commands.generate import generate_command
from chanlog.cli.commands.inspect import plugins_command, stats_command, verify_command
from chanlog.cli.commands.log import log_command
from chanlog.cli.commands.setup import init_command
from chanlog.cli.commands.snapshots import snapshots_command
from chanlog.cli.commands.transfer import append_command, export_command, import_command
from chanlog.cli.errors import ExitCode

__all__ = ["ExitCode", "cli", "main"]

for _command in (
    demo_command,
    init_command,
    append_command,
    import_command,
    export_command,
    log_command,
    show_command,
    verify_command,
    snapshot_command,
    snapshots_command,
    stats_command,
    plugins_command,
    generate_command,
    run_command,
    consumers_command,
    ingest_command,
):
    cli.add_command(_command)


def main() -> None:
    """Run the ``chanlog`` command (the console script's entry point)."""
    cli(prog_name="chanlog")
