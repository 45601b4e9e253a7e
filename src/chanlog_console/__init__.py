"""The ``chanlog`` console script's entry point (``chanlog = "chanlog_console:main"``).

A package of its own, outside :mod:`chanlog`, so that it runs before chanlog is imported:
importing chanlog and loading its plugins takes about half a second, and Ctrl-C then
printed a ``KeyboardInterrupt`` traceback. Here it is ``chanlog: interrupted`` and exit
code 130, as once a command runs (:mod:`chanlog.cli.errors`).
"""

from __future__ import annotations

import sys

__all__ = ["main"]

INTERRUPTED = 130
"""The exit code of an interrupted command (``chanlog.cli.ExitCode.INTERRUPTED``)."""


def main() -> None:
    """Import the ``chanlog`` command and run it; Ctrl-C outside a command's own handling
    (while it starts, or as it ends) is one line on stderr and exit code 130."""
    try:
        from chanlog.cli import main as run

        run()
    except KeyboardInterrupt:
        print("chanlog: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
