"""Ensembles: voting functions, the strategies users subclass, and the EnsembleModule."""

from lightning_fer.ensemble.functional import hard_vote, soft_vote
from lightning_fer.ensemble.module import DataLeakError, EnsembleModule, check_held_out
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote, SoftVote, Stacking

__all__ = [
    "DataLeakError",
    "EnsembleModule",
    "EnsembleStrategy",
    "HardVote",
    "SoftVote",
    "Stacking",
    "check_held_out",
    "hard_vote",
    "soft_vote",
]
