"""``snapshots``: the stored snapshots with their sizes, and ``snapshots prune`` (ADR 0030)."""

from __future__ import annotations

from pathlib import Path

import click

from chanlog.backends.base import Backend
from chanlog.backends.capabilities import FileBacked, ManagesSnapshots
from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.errors import DecodeError
from chanlog.snapshots.codec import base_reference
from chanlog.snapshots.manager import stored_snapshot

__all__ = ["snapshots_command"]


_GONE = -1
"""What :func:`_base_of` says of a snapshot deleted since it was listed."""


def _base_of(backend: Backend, offset: int) -> int | None:
    """The offset of the snapshot the one at ``offset`` is incremental on (``None``: it is
    whole, or unreadable: ``verify`` says why; :data:`_GONE`: it was pruned since it was
    listed, by another process)."""
    try:
        snapshot = stored_snapshot(backend, offset)
        if snapshot is None or snapshot.offset != offset:
            return _GONE
        reference = base_reference(snapshot)
    except DecodeError:
        return None
    return None if reference is None else reference[0]


def _file_size(backend: object) -> int | None:
    """Bytes of the backend's file and its write-ahead log, when it keeps one."""
    if not isinstance(backend, FileBacked):
        return None
    path = Path(backend.path)
    return sum(
        candidate.stat().st_size for candidate in (path, Path(f"{path}-wal")) if candidate.exists()
    )


@click.group("snapshots", invoke_without_command=True)
@json_option
@pass_cli
@click.pass_context
def snapshots_command(ctx: click.Context, state: CliContext) -> None:
    """List the stored snapshots: offset, size and the snapshot an incremental one is
    taken on, their total and their share of the log's file. 'prune' deletes those the
    snapshot policy does not keep (never one a kept snapshot is taken on)."""
    if ctx.invoked_subcommand is not None:
        return
    store = state.open_store(read_only=True, projections=[])
    backend = store.backend
    if not isinstance(backend, ManagesSnapshots):
        raise CliError(f"the {backend.name} backend cannot list its snapshots", ExitCode.USAGE)
    listed = [
        (offset, size, _base_of(backend, offset)) for offset, size in backend.snapshot_sizes()
    ]
    # A snapshot pruned between the listing and the read of its first line is not shown: it
    # is no longer stored (and it is not whole, as it would otherwise seem).
    kept = [(offset, size, base) for offset, size, base in listed if base != _GONE]
    sizes = [(offset, size) for offset, size, _base in kept]
    bases = [base for _offset, _size, base in kept]
    total = sum(size for _offset, size in sizes)
    file_size = _file_size(backend)
    output = state.output
    if output.json_mode:
        output.json(
            {
                "snapshots": [
                    {"offset": offset, "bytes": size, "base": base}
                    for (offset, size), base in zip(sizes, bases, strict=True)
                ],
                "total_bytes": total,
                "file_bytes": file_size,
                "log_length": len(store),
            }
        )
        return
    output.table(
        None,
        ("offset", "bytes", "taken on"),
        [
            (offset, f"{size:,}", "whole" if base is None else f"snapshot {base}")
            for (offset, size), base in zip(sizes, bases, strict=True)
        ],
    )
    share = "" if not file_size else f", {100 * total / file_size:.1f}% of the file's {file_size:,}"
    output.note(f"{len(sizes)} snapshot(s), {total:,} bytes{share}")


@snapshots_command.command("prune")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=None,
    help="Keep the latest KEEP and thinned older ones; 0 keeps every snapshot (as the "
    "policy's keep = 0 does) [default: what the configured snapshot policy keeps].",
)
@json_option
@pass_cli
def prune_command(state: CliContext, keep: int | None) -> None:
    """Delete the snapshots the snapshot policy (or --keep) does not keep. Records and
    snapshot-created events stay; reconstruction of an old offset starts further back."""
    store = state.open_store(projections=[], create=False)
    pruned = store.prune_snapshots(keep)
    output = state.output
    if output.json_mode:
        output.json({"deleted": pruned})
        return
    output.line(f"deleted {len(pruned)} snapshot(s)" + (f": {pruned}" if pruned else ""))
