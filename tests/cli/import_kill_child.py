"""``chanlog import`` killed (SIGKILL, by itself) at one chosen point: the child process of
:mod:`cli.test_import_kills`.

Usage::

    python import_kill_child.py CONFIG EXPORT KILL_AT [TRAIL]

Runs ``chanlog --config CONFIG import --batch-size 40 EXPORT`` in this process, counting its
points as :mod:`backends.crash_points_child` does (every SQL statement, every call that
changes files) and killing itself before point ``KILL_AT`` (-1: never). TRAIL, when given,
gets what each point was, one per line, once the import is done.
"""

from __future__ import annotations

import sys
from pathlib import Path

from backends.crash_points_child import count_points
from chanlog.cli import cli

BATCH_SIZE = 40


def main() -> None:
    config, export, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trail: list[str] | None = [] if len(sys.argv) > 4 else None
    count_points(kill_at, trail)
    arguments = ["--config", config, "import", "--batch-size", str(BATCH_SIZE), export]
    try:
        cli.main(args=arguments, prog_name="chanlog")
    except SystemExit as exit_:
        if trail is not None:
            Path(sys.argv[4]).write_text("\n".join(trail) + "\n", encoding="utf-8")
        raise SystemExit(exit_.code) from None


if __name__ == "__main__":
    main()
