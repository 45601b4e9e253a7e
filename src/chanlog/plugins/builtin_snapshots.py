"""Built-in plugin: the ``every-n-events`` and ``never`` snapshot policies."""

from __future__ import annotations
