"""What keeps the NATS tests apart from each other, from another run on the same machine and
from what a killed run left behind (see ``conftest.py``): a private server never mistakes
another's for its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.nats


def test_a_private_server_does_not_take_another_on_its_port_for_itself(
    private_server: Any, tmp_path: Path
) -> None:
    other = type(private_server)(tmp_path / "other")
    other.port = private_server.port
    with pytest.raises(RuntimeError, match=f"on port {other.port} exited at start"):
        other.start()
    assert other.process is None
    assert private_server.process.poll() is None  # the first one is left alone
