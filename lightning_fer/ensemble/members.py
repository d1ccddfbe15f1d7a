"""Ensemble members: a trained ``FERClassifier`` as a plain network (:class:`MemberNet`), loading
member checkpoints, and the check that a strategy is never fitted on a member's training data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lightning_fer.models.classifier import adapt_input


class DataLeakError(ValueError):
    """A learning strategy would be fitted on samples a member was trained on."""


class MemberNotFoundError(FileNotFoundError):
    """A member checkpoint of an ensemble does not exist; the message says what makes it."""


class MemberNet(nn.Module):
    """A trained member as a plain network: its backbone, the region it was trained on, the size
    and channels it takes, its classes and what it was trained on.

    ``forward`` takes 3-channel images of any size ``[N, 3, H, W]`` (normalised as the data
    module does), resizes them to ``image_size``, greys them for a 1-channel backbone, and
    returns float logits ``[N, C]``.

    Example:
        >>> from lightning_fer import FERClassifier
        >>> member = MemberNet.from_classifier(FERClassifier("resnet18", image_size=32, region="mouth"))
        >>> member.region, member.image_size, member(torch.randn(2, 3, 64, 64)).shape
        ('mouth', 32, torch.Size([2, 7]))
    """

    def __init__(
        self,
        backbone: nn.Module,
        class_names: Sequence[str],
        region: str = "face",
        image_size: int = 224,
        in_channels: int = 3,
        channels_last: bool | None = False,
        name: str = "member",
        data_fingerprint: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone  # the attribute name keeps ensemble checkpoints' keys as they were
        self.class_names = list(class_names)
        self.region = region
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self.channels_last = bool(channels_last)
        self.name = name
        self.data_fingerprint = data_fingerprint

    @classmethod
    def from_classifier(cls, model: nn.Module, name: str | None = None) -> MemberNet:
        """The plain network of a ``FERClassifier`` (sharing its backbone's weights)."""
        hp = model.hparams
        return cls(model.backbone, model.class_names, model.region, hp.image_size, hp.in_channels, model.channels_last,
                   name or f"{hp.backbone}[{model.region}]", getattr(model, "data_fingerprint", None))

    def set_channels_last(self, on: bool) -> MemberNet:
        """Run in the channels-last memory format (``False``: contiguous), weights and inputs alike."""
        self.channels_last = bool(on)
        self.backbone.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size:  # each member sees views at the size it was trained on
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                          antialias=True, align_corners=False)
        out = self.backbone(adapt_input(x, self.in_channels, self.channels_last))
        return (out[0] if isinstance(out, tuple) else out).float()


def _maker_of(path: Path) -> str:
    """The command that writes a member checkpoint at ``path``: the ``cv`` config whose output
    folder holds it, else ``fit`` with the member's config."""
    import yaml

    repo_configs = Path(__file__).resolve().parents[2] / "configs"
    text = str(path)
    for cfg in sorted(Path("configs").glob("*/cv*.yaml")) or sorted(repo_configs.glob("*/cv*.yaml")):
        try:
            data = yaml.safe_load(cfg.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        where = data.get("members_dir") or data.get("output_dir")
        if where and text.startswith(str(where).rstrip("/") + "/"):
            return f"python -m lightning_fer cv --config {cfg}"
    return "python -m lightning_fer fit --config <the member's config> (its ModelCheckpoint dirpath)"


def load_member(path: str | Path, index: int = 0) -> MemberNet:
    """A member from a ``FERClassifier`` checkpoint (weights only), or a shipped single model
    (``pretrained:fer2013``); a missing file raises :class:`MemberNotFoundError` naming the
    command that makes it, one the weights-only loader refuses
    :class:`~lightning_fer.checkpoints.UnsafeCheckpointError` naming the file and what it holds."""
    import pickle

    from lightning_fer.checkpoints import UnsafeCheckpointError, unsafe_message
    from lightning_fer.models.classifier import FERClassifier
    from lightning_fer.shipped import resolve_member

    path = Path(resolve_member(path)).expanduser()
    if not path.is_file():
        raise MemberNotFoundError(f"ensemble member {index}: checkpoint {path} does not exist; make it with: {_maker_of(path)}")
    # LightningCLI instantiates an ensemble inside a context that hands its own hyperparameters
    # to every save_hyperparameters() call; a member built within it would take the ensemble's.
    try:
        from lightning.pytorch.core.mixins import hparams_mixin

        token = hparams_mixin._given_hyperparameters.set(None)
    except (ImportError, AttributeError):  # pragma: no cover - other Lightning versions
        hparams_mixin, token = None, None
    try:
        model = FERClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(f"ensemble member {index}: {unsafe_message(path, err)}") from None
    finally:
        if token is not None:
            hparams_mixin._given_hyperparameters.reset(token)
    return MemberNet.from_classifier(model, f"{model.hparams.backbone}[{model.region}]@{path.name}")


def check_held_out(member_prints: Sequence[dict | None], data_print: dict, names: Sequence[str]) -> None:
    """Raise :class:`DataLeakError` unless the data's validation split is held out from every
    member's training.

    A member fitted on fold ``k`` of a split (same source, number of folds and seed) never saw
    that split's fold ``k``; any other combination may overlap, and is refused.
    """
    problems = []
    for name, fp in zip(names, member_prints):
        if not fp:
            problems.append(f"{name}: no data fingerprint in its checkpoint, so its training data cannot be checked")
            continue
        for key in ("source", "num_folds", "seed", "fold"):
            if fp.get(key) != data_print.get(key):
                problems.append(
                    f"{name}: trained with {key}={fp.get(key)!r}, but the held-out data has {key}={data_print.get(key)!r}"
                )
                break
        else:
            if fp.get("train_hash") != data_print.get("train_hash"):
                problems.append(f"{name}: its training images differ from this split's (the folds file changed?)")
    if problems:
        raise DataLeakError(
            "refusing to fit the strategy: its held-out predictions may include samples a member was trained on\n  "
            + "\n  ".join(problems)
            + "\nfit it on the validation fold each member was held out from (same source, num_folds, seed and fold)"
        )
