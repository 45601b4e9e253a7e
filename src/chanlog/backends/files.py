"""File operations shared by the file-backed parts of the backends: publishing a file's
directory entry, replacing a small file so a crash leaves the old bytes or the new ones,
never a mix, and telling which files this process may not write."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

__all__ = ["fsync_directory", "fsync_file", "not_writable", "replace_atomically"]


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


def fsync_file(path: Path) -> None:
    """Make what was written to ``path`` (by any descriptor: the page cache is the file's)
    survive a power loss; a missing file has nothing to sync.

    Raises:
        OSError: the file cannot be opened or synced.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(descriptor)
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


def not_writable(directory: Path, files: list[Path]) -> list[str]:
    """Which of ``directory`` (where new files must be created) and the existing ``files``
    this process may not write, each described for a message with its mode and owner.

    Asks the kernel (``access``), which knows the process's user, groups, capabilities and
    the file system's own rules (a read-only mount), without opening anything: closing a
    descriptor of a database file would drop the locks SQLite holds on it in this process.
    """
    found: list[str] = []
    if not os.access(directory, os.W_OK | os.X_OK):
        found.append(f"the directory {directory}{_owner(directory)}")
    for file in files:
        if file.exists() and not os.access(file, os.W_OK):
            found.append(f"{file}{_owner(file)}")
    return found


def _owner(path: Path) -> str:
    try:
        status = path.stat()
        mounted_read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:  # pragma: no cover - removed meanwhile
        return ""
    # There the mode and owner say yes, and an operator would change them to no avail.
    where = ", on a read-only file system" if mounted_read_only else ""
    return f" (mode {stat.S_IMODE(status.st_mode):04o}, owner uid {status.st_uid}{where})"
