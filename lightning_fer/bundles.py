"""Writing shipped-model bundles (``benchmarks/ship.py``): member checkpoints stripped of optimiser
and loop state, in float16, and an ensemble's strategy with its learnt state; read back by
:mod:`lightning_fer.zoo`."""

from __future__ import annotations

import os

from lightning_fer.checkpoints import UnsafeCheckpointError, unsafe_message
from lightning_fer.zoo import FORMAT

__all__ = ["ensemble_bundle", "member_bundle", "stripped"]

def stripped(ckpt_path: str | os.PathLike, half: bool = True) -> dict:
    """A member checkpoint in the current format (older ones migrated by loading them), without
    optimiser, loop or callback state; float weights in float16 where ``half``."""
    import lightning

    from lightning_fer.models.classifier import FERClassifier

    try:
        model = FERClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - named below
        import pickle

        if isinstance(err, pickle.UnpicklingError):
            raise UnsafeCheckpointError(unsafe_message(ckpt_path, err)) from None
        raise
    out = {"state_dict": {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()},
           # the class path too: LightningCLI reads a --ckpt_path's hyperparameters as config
           "hyper_parameters": {"_class_path": "lightning_fer.FERClassifier",
                                "_instantiator": "lightning.pytorch.cli.instantiate_module",
                                **{k: v for k, v in dict(model.hparams).items() if not k.startswith("_")}},
           "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(out)  # the classes, region, backbone and data fingerprint
    return out


def member_bundle(ckpt_path: str | os.PathLike, data: dict, half: bool = True) -> dict:
    return {"format": FORMAT, "kind": "member", "checkpoint": stripped(ckpt_path, half), "data": dict(data)}


def ensemble_bundle(member_paths: list, strategy, views: list[str], flip: bool, data: dict, half: bool = True) -> dict:
    """An ensemble's bundle: its members' stripped checkpoints, the strategy's spec and learnt
    state (``strategy``: a fitted :class:`~lightning_fer.ensemble.strategy.EnsembleStrategy`)."""
    state = {f"ensemble.strategy.{k}": v for k, v in strategy.state_dict().items()}
    return {"format": FORMAT, "kind": "ensemble", "members": [stripped(p, half) for p in member_paths],
            "strategy": strategy.spec(), "strategy_state": state, "views": list(views), "flip": bool(flip),
            "data": dict(data)}
