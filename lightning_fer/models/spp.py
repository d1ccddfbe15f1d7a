"""Spatial pyramid pooling (He et al., 2014) and SPP-net on a configurable trunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SpatialPyramidPooling(nn.Module):
    """Pool a feature map into a fixed-length vector over a pyramid of grids.

    Args:
        levels: grid sides, e.g. ``(1, 2, 4)`` for 1x1, 2x2 and 4x4 bins.
        mode: ``max`` (as in SPP-net) or ``avg``.

    Example:
        >>> spp = SpatialPyramidPooling((1, 2, 4))
        >>> spp(torch.randn(2, 8, 13, 7)).shape  # any height and width
        torch.Size([2, 168])
    """

    def __init__(self, levels: Sequence[int] = (1, 2, 4), mode: str = "max") -> None:
        super().__init__()
        if not levels or any(int(level) < 1 for level in levels):
            raise ValueError(f"SPP levels must be positive integers, got {list(levels)}")
        if mode not in ("max", "avg"):
            raise ValueError(f"SPP mode must be 'max' or 'avg', got {mode!r}")
        self.levels = [int(level) for level in levels]
        self.mode = mode

    @property
    def bins(self) -> int:
        return sum(level * level for level in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.adaptive_max_pool2d if self.mode == "max" else F.adaptive_avg_pool2d
        return torch.cat([pool(x, level).flatten(1) for level in self.levels], dim=1)


def zf5(in_channels: int = 3) -> nn.Sequential:
    """The five convolutional layers of ZF-5, the trunk of the original SPP-net, with batch
    normalisation in place of local response normalisation (it trains from scratch reliably)
    and padding so that inputs down to 32 px keep a feature map."""

    def block(cin, cout, k, s, p):
        return [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, 96, 7, 2, 3),
        nn.MaxPool2d(3, 2, 1),
        *block(96, 256, 5, 2, 2),
        nn.MaxPool2d(3, 2, 1),
        *block(256, 384, 3, 1, 1),
        *block(384, 384, 3, 1, 1),
        *block(384, 256, 3, 1, 1),
    )


class SPPNet(nn.Module):
    """A convolutional trunk, spatial pyramid pooling and a two-layer classifier: takes inputs of
    any size and aspect ratio.

    Args:
        trunk: the convolutional layers (their output is pooled).
        num_classes: outputs.
        levels: pyramid grid sides.
        hidden: width of the hidden fully connected layer.
        dropout: dropout before each fully connected layer.

    Example:
        >>> net = SPPNet(zf5(), num_classes=7)
        >>> net(torch.randn(2, 3, 64, 96)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        trunk: nn.Module,
        num_classes: int,
        levels: Sequence[int] = (1, 2, 4),
        hidden: int = 1024,
        dropout: float = 0.5,
        trunk_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.spp = SpatialPyramidPooling(levels)
        if trunk_channels is None:
            was_training = trunk.training
            trunk.eval()
            with torch.no_grad():
                first = next(m for m in trunk.modules() if isinstance(m, nn.Conv2d))
                trunk_channels = trunk(torch.zeros(1, first.in_channels, 64, 64)).shape[1]
            trunk.train(was_training)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(trunk_channels * self.spp.bins, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.spp(self.trunk(x)))
