"""A third-party plugin as ``pip install`` makes it found: a ``*.dist-info`` folder with an
``entry_points.txt`` beside the plugin's module, in a folder on ``sys.path``. The fixture
``install_plugin`` (in ``tests/conftest.py``) installs one; :func:`uninstall` removes it, as
an operator uninstalling the distribution would."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from chanlog.cli import cli
from chanlog.plugins import reset_default_host

__all__ = [
    "CHANNEL",
    "EVENT_MODULE",
    "InstallPlugin",
    "chanlog_cli",
    "install_into",
    "tip",
    "uninstall",
]

CHANNEL = "0x" + "cc" * 32

EVENT_MODULE = """
from typing import ClassVar

import attrs

import chanlog
from chanlog import Event, fields


@attrs.define(frozen=True, slots=True, kw_only=True)
class TipPaid(Event):
    event_type: ClassVar[str] = "tip-paid"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)
    group: ClassVar[str] = "tips"

    channel_id: str = attrs.field(validator=fields.bytes32)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)


@chanlog.hookimpl
def chanlog_register_event_types(register):
    register(TipPaid)
"""
"""A plugin that defines the event type ``tip-paid`` (a channel's tip, an amount)."""

InstallPlugin = Callable[[str], Path]
"""``install_plugin(source) -> site``: see the ``install_plugin`` fixture."""

MODULE = "chanlog_fault_plugin"


def _forget() -> None:
    """Make the next import and the next plugin host see the site folder as it is now.

    The import system and ``importlib.metadata`` remember what they listed of a folder
    until its modification time changes, which a file written within the same tick of
    the clock does not always do."""
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()
    reset_default_host()


def install_into(site: Path, source: str) -> Path:
    """Install the distribution ``chanlog-fault-plugin`` into ``site``: its entry point
    ``fault`` is the module ``chanlog_fault_plugin`` holding ``source``."""
    (site / f"{MODULE}.py").write_text(textwrap.dedent(source))
    info = site / f"{MODULE}-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: chanlog-fault-plugin\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[chanlog]\nfault = {MODULE}\n")
    _forget()
    return site


def uninstall(site: Path) -> None:
    """Remove the distribution from ``site``."""
    for path in site.glob(f"{MODULE}*"):
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
    _forget()


def chanlog_cli(*args: str, cwd: Path) -> Result:
    """``chanlog ARGS`` in ``cwd``, in-process."""
    here = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, list(args), prog_name="chanlog")
    finally:
        os.chdir(here)


def tip(amount: int, timestamp_ms: int = 1) -> str:
    """A ``tip-paid`` envelope of ``amount`` on :data:`CHANNEL`, as JSON text."""
    payload = {"channel_id": CHANNEL, "amount": str(amount), "timestamp_ms": timestamp_ms}
    return orjson.dumps({"type": "tip-paid", "payload": payload}).decode()
