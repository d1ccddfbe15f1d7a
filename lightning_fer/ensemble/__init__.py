"""Ensembles: voting functions, the strategies users subclass, member networks, the plain
``EnsembleNet`` and the ``EnsembleModule`` over it."""

from lightning_fer.ensemble.functional import hard_vote, soft_vote
from lightning_fer.ensemble.members import DataLeakError, MemberNet, check_held_out
from lightning_fer.ensemble.module import EnsembleModule
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote, SoftVote, Stacking

__all__ = [
    "DataLeakError",
    "EnsembleModule",
    "EnsembleNet",
    "EnsembleStrategy",
    "HardVote",
    "MemberNet",
    "SoftVote",
    "Stacking",
    "check_held_out",
    "hard_vote",
    "soft_vote",
]
