"""Run-wide settings: full or quick sizes, where files go, which cases run."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from chanlog.backends.head_file import HEAD_FILE_SUFFIX

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """Settings every suite reads.

    Attributes:
        quick: small sizes and few repetitions, to check the harness in seconds (the
            figures of a quick run are not the committed ones).
        workdir: a directory on a real disk for sqlite files (fsync must mean something).
        only: shell patterns of case ids to run (empty: all).
    """

    quick: bool
    workdir: Path
    only: tuple[str, ...] = ()

    def size(self, full: int, quick: int) -> int:
        """``full`` in a full run, ``quick`` in a quick one."""
        return quick if self.quick else full

    def reps(self, full: int) -> int:
        """Repetitions: ``full`` in a full run, at most 2 in a quick one."""
        return min(2, full) if self.quick else full

    def wants(self, case_id: str) -> bool:
        """Whether ``case_id`` is selected by :attr:`only`."""
        return not self.only or any(fnmatch.fnmatch(case_id, pattern) for pattern in self.only)

    def path(self, name: str) -> Path:
        """A fresh file path in :attr:`workdir` (any older file of that name and its side
        files, SQLite's and chanlog's head witness, are removed: a new log is refused among
        the side files of a deleted one, ADR 0051)."""
        target = self.workdir / name
        for suffix in ("", "-wal", "-shm", "-journal", HEAD_FILE_SUFFIX):
            Path(str(target) + suffix).unlink(missing_ok=True)
        return target
