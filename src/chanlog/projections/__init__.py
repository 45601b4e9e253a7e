"""Projections: folds of the log into objective, channel and message state."""

from __future__ import annotations

from chanlog.projections.base import Projection, ProjectionStage

__all__ = ["Projection", "ProjectionStage"]
