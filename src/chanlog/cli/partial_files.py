"""The file an export writes before it renames it over its destination: a name of its own
beside the destination, locked while it is written (ADR 0015). An export killed before it
renamed its file (kill -9, a power cut) leaves it behind; the next export to the same
destination removes such files, telling them from a live export's by its lock."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, and nothing swept
    fcntl = None  # type: ignore[assignment]

__all__ = ["ABANDONED_AFTER", "partial_file"]

logger = logging.getLogger("chanlog.cli")

ABANDONED_AFTER = 60.0
"""Seconds since it was last written after which an unlocked partial file is taken for an
abandoned one: a live export locks its file right after it creates it."""


@contextlib.contextmanager
def partial_file(destination: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new partial file for ``destination``, opened for writing and locked until it is
    closed (rename it inside the block, so that it is never unlocked under its partial
    name while alive); removed if the block raises. Abandoned partial files of earlier
    exports to ``destination`` are removed first."""
    _sweep(destination)
    partial = destination.with_name(f"{destination.name}.{secrets.token_hex(6)}.partial")
    try:
        # Not mkstemp: its file is private to the user; an export gets the umask's mode.
        with partial.open("xb") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield partial, handle
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def _sweep(destination: Path) -> None:
    if fcntl is None:  # pragma: no cover - not POSIX
        return
    pattern = re.compile(re.escape(destination.name) + r"\.[0-9a-f]{12}\.partial")
    try:
        candidates = [p for p in destination.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return  # the export itself says what is wrong with the directory
    now = time.time()
    for path in candidates:
        with contextlib.suppress(OSError), path.open("rb") as handle:
            if now - os.fstat(handle.fileno()).st_mtime < ABANDONED_AFTER:
                continue  # may be an export that has not locked its file yet
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live export's
            path.unlink()
            logger.warning("removed %s, left by an export that did not finish", path)
