"""Ensembles: voting functions, the strategies users subclass, member networks, the plain
``EnsembleNet`` and the ``EnsembleModule`` over it."""

from lightning_fer.ensemble.functional import agreement, ensemble_selection, hard_vote, selective_accuracy, soft_vote
from lightning_fer.ensemble.members import DataLeakError, MemberNet, check_held_out
from lightning_fer.ensemble.module import EnsembleModule
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleSelection, EnsembleStrategy, HardVote, SoftVote, Stacking

__all__ = [
    "DataLeakError",
    "EnsembleSelection",
    "EnsembleModule",
    "EnsembleNet",
    "EnsembleStrategy",
    "HardVote",
    "MemberNet",
    "SoftVote",
    "Stacking",
    "agreement",
    "check_held_out",
    "ensemble_selection",
    "hard_vote",
    "selective_accuracy",
    "soft_vote",
]
