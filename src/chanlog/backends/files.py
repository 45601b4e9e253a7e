"""Durable file operations shared by the file-backed parts of the backends: publishing a
file's directory entry, and replacing a small file so a crash leaves the old bytes or the
new ones, never a mix."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["fsync_directory", "replace_atomically"]


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a new or renamed file) survive a power loss.

    Platforms and filesystems that cannot open or fsync a directory are skipped silently:
    there the rename itself is all the durability on offer.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - filesystems that refuse directory fsync
        pass
    finally:
        os.close(descriptor)


def replace_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with a file holding ``data``: written to a private temporary file
    beside it, fsync'd, renamed over ``path`` (atomic on POSIX and Windows), and the
    directory fsync'd. Readers see the old file or the new one, whole.

    Raises:
        OSError: the directory is not writable, the disk is full, ... (the temporary file
            is removed).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)
