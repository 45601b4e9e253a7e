"""Projections: folds of the log into objective, channel and message state."""

from __future__ import annotations

from chanlog.projections.base import DeferredState, Projection, ProjectionStage
from chanlog.projections.channel import (
    Challenge,
    ChannelProjection,
    ChannelState,
    ChannelTerms,
    OnChainFacts,
    TurnSignatures,
)
from chanlog.projections.entity import EntityProjection, EntityStage
from chanlog.projections.messages import MessagesProjection, MessageState
from chanlog.projections.objective import ObjectiveProjection, ObjectiveState

__all__ = [
    "Challenge",
    "ChannelProjection",
    "ChannelState",
    "ChannelTerms",
    "DeferredState",
    "EntityProjection",
    "EntityStage",
    "MessageState",
    "MessagesProjection",
    "ObjectiveProjection",
    "ObjectiveState",
    "OnChainFacts",
    "Projection",
    "ProjectionStage",
    "TurnSignatures",
]
