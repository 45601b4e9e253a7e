"""Realistic, deterministic workloads: a generator of state-channel logs, the generator's
own expectation of what they fold to, and one mutator per rule of DESIGN section 4."""

from __future__ import annotations

from chanlog.workload.expectation import Expectation, ExpectedChannel, ExpectedObjective
from chanlog.workload.generator import OUR_ADDRESS, ChannelPlan, Workload, WorkloadConfig, generate
from chanlog.workload.mutators import MUTATORS, RULES, Mutation, mutate

__all__ = [
    "MUTATORS",
    "OUR_ADDRESS",
    "RULES",
    "ChannelPlan",
    "Expectation",
    "ExpectedChannel",
    "ExpectedObjective",
    "Mutation",
    "Workload",
    "WorkloadConfig",
    "generate",
    "mutate",
]
