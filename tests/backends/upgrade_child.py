"""A process opening an old-format sqlite log, for the upgrade tests of
:mod:`backends.test_sqlite_upgrade_faults`.

Usage::

    python upgrade_child.py open LOG KILL_AT
        Open LOG for writing (which upgrades it) and close it, counting the points of
        :func:`crash_points_child.count_points` and killing itself (SIGKILL) at point
        ``KILL_AT`` (-1: never). Prints, one per line, what each point passed was.

    python upgrade_child.py hold LOG
        Open LOG for writing (which upgrades it), print "open", and wait for stdin to
        close before closing the log: many such processes released together upgrade one
        log at once. Prints the error instead of "open" when the open is refused.

LOG is the path of an sqlite file, or the options of a ``PostgresBackend`` as a JSON
object (``dsn`` and ``schema``).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from chanlog.backends.base import Backend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import ChanlogError

if TYPE_CHECKING:  # the same module, named as pytest's pythonpath (tests/) names it
    from backends.crash_points_child import count_points
else:  # run as a script, this file's folder is first on sys.path
    from crash_points_child import count_points


def _backend(log: str) -> Backend:
    if not log.startswith("{"):
        return SqliteBackend(log)
    from chanlog_postgres import PostgresBackend

    return PostgresBackend(**json.loads(log))


def _open(log: str, kill_at: int) -> None:
    trail: list[str] = []
    count_points(kill_at, trail)
    _backend(log).close()
    print("\n".join(point.replace("\n", " ") for point in trail))


def _hold(log: str) -> None:
    try:
        backend = _backend(log)
    except ChanlogError as error:
        print(f"refused: {type(error).__name__}: {error}", flush=True)
        return
    print("open", flush=True)
    sys.stdin.read()
    backend.close()


def main() -> None:
    if sys.argv[1] == "open":
        _open(sys.argv[2], int(sys.argv[3]))
    else:
        _hold(sys.argv[2])


if __name__ == "__main__":
    main()
