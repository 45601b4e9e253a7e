"""Built-in plugin: the ``objective``, ``channel`` and ``messages`` projections."""

from __future__ import annotations
