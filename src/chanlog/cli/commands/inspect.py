"""``verify``, ``stats`` and ``plugins``: what the log and the installation hold."""

from __future__ import annotations

import os
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError
from chanlog.errors import IntegrityError
from chanlog.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, default_host

__all__ = ["plugins_command", "stats_command", "verify_command"]


@click.command("verify")
@json_option
@pass_cli
def verify_command(state: CliContext) -> None:
    """Recompute every event id and the hash chain; exit 1 at the first mismatch."""
    # No projections: the hashes must be checkable even when a tampered event breaks a fold.
    store = state.open_store(read_only=True, projections=[])
    output = state.output
    try:
        with output.progress("verify", len(store)) as update:
            count = store.verify(progress=lambda done, _total: update(done))
    except IntegrityError as exc:
        if output.json_mode:
            output.json({"ok": False, "offset": exc.offset, "error": str(exc)})
        raise CliError.from_error(exc) from exc
    head = "0x" + store.backend.head().chain_hash.hex()
    if output.json_mode:
        output.json({"ok": True, "records": count, "chain_hash": head})
    else:
        output.line(f"ok: {count} records verified; chain head {head}")


@click.command("stats")
@json_option
@pass_cli
def stats_command(state: CliContext) -> None:
    """Length, chain head, events per type, entities per projection, latest snapshot."""
    store = state.open_store(read_only=True)
    backend = store.backend
    head = backend.head()
    counts: Counter[str] = Counter()
    # Reads stored records without decoding them: the type is a column of its own.
    with state.output.progress("replay", head.length) as update:
        for done, stored in enumerate(backend.read(0, head.length), start=1):
            counts[stored.event_type] += 1
            if done % 5000 == 0:
                update(done)
    snapshot = backend.latest_snapshot()
    path = getattr(backend, "path", None)
    stats: dict[str, Any] = {
        "backend": backend.name,
        "path": None if path is None else str(path),
        "file_bytes": _file_size(path),
        "serializer": store.serializer.name,
        "length": head.length,
        "chain_hash": "0x" + head.chain_hash.hex(),
        "events_by_type": dict(sorted(counts.items())),
        "entities": {name: len(projection) for name, projection in store.projections.items()},
        "latest_snapshot": None
        if snapshot is None
        else {
            "offset": snapshot.offset,
            "snapshot_hash": "0x" + snapshot.snapshot_hash.hex(),
            "versions": snapshot.versions,
        },
    }
    output = state.output
    if output.json_mode:
        output.json(stats)
        return
    summary = {key: value for key, value in stats.items() if key != "events_by_type"}
    output.mapping("store", summary)
    if counts:
        output.table(
            "events by type", ("type", "count"), [(name, n) for name, n in sorted(counts.items())]
        )


def _file_size(path: object) -> int | None:
    if not isinstance(path, str | os.PathLike):
        return None
    base = Path(path)
    if not base.exists():
        return None
    # The write-ahead log holds committed data too until it is checkpointed.
    extras = [base.with_name(base.name + suffix) for suffix in ("-wal", "-shm")]
    return base.stat().st_size + sum(extra.stat().st_size for extra in extras if extra.exists())


@click.command("plugins")
@json_option
@pass_cli
def plugins_command(state: CliContext) -> None:
    """List the loaded plugins and what each registered."""
    host = default_host()
    distributions: dict[str, tuple[str, str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None:
            distributions[entry_point.name] = (dist.name, dist.version)
    registered: dict[str, dict[str, list[str]]] = {name: {} for name in host.plugin_names()}
    for contribution in host.contributions():
        kinds = registered.setdefault(contribution.plugin, {})
        kinds.setdefault(contribution.kind, []).append(contribution.name)
    plugins: list[dict[str, Any]] = []
    for name, kinds in registered.items():
        builtin = name in BUILTIN_PLUGINS
        dist_name, version = distributions.get(name, ("chanlog", _chanlog_version()))
        plugins.append(
            {
                "name": name,
                "origin": "built-in" if builtin else "entry point",
                "distribution": dist_name if not builtin else "chanlog",
                "version": version if not builtin else _chanlog_version(),
                "registered": kinds,
            }
        )
    output = state.output
    if output.json_mode:
        output.json({"plugins": plugins})
        return
    rows = []
    for plugin in plugins:
        kinds = plugin["registered"]
        described = "; ".join(_describe(kind, names) for kind, names in kinds.items()) or "-"
        rows.append(
            (
                plugin["name"],
                plugin["origin"],
                f"{plugin['distribution']} {plugin['version']}",
                described,
            )
        )
    output.table("plugins", ("plugin", "origin", "distribution", "registered"), rows)


def _describe(kind: str, names: list[str]) -> str:
    label = kind.replace("_", " ")
    if kind == "event_types" and len(names) > 6:
        return f"{label}: {len(names)} ({', '.join(names[:3])}, ...)"
    return f"{label}: {', '.join(names)}"


def _chanlog_version() -> str:
    from chanlog import __version__

    return __version__
