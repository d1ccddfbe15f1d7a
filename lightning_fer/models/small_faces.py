"""Networks shaped for small faces (40-64 px): a VGG-style CNN and a depthwise-separable
residual network in the spirit of mini-Xception (Arriaga et al., 2017).

torchvision's ImageNet networks shrink a 48 px face to 12 px in their first two layers; these
keep full resolution in their first stage and halve it once per stage, so a 48 px face reaches
the classifier as a 6x6 map after four stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _PooledNet(nn.Module):
    """A convolutional trunk (``features``), global average pooling, dropout and one linear layer."""

    def _finish(self, features: nn.Sequential, channels: int, num_classes: int, drop_rate: float) -> None:
        #: the convolutional trunk (SPP-net can pool it: ``spp_trunk: fer_vgg``).
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(drop_rate), nn.Linear(channels, num_classes))
        self.num_features = channels
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


class FERVGGNet(_PooledNet):
    """A plain VGG-style CNN for small faces: ``convs_per_stage`` 3x3 conv + BN + ReLU per stage,
    a 2x2 max-pool between stages, global average pooling, dropout and one linear layer.

    Args:
        num_classes: outputs.
        in_channels: 1 (grey) or 3.
        widths: channels of each stage (one stage per entry).
        convs_per_stage: convolutions per stage (the depth): one number for every stage, or one per
            stage (``[1, 2, 2, 2]``: a single convolution at full resolution, where it costs most).
        drop_rate: dropout before the classifier.

    Example:
        >>> net = FERVGGNet(7, in_channels=1, widths=(8, 16), convs_per_stage=1)
        >>> net(torch.randn(2, 1, 48, 48)).shape
        torch.Size([2, 7])
        >>> len(FERVGGNet(7, 1, widths=(8, 16), convs_per_stage=[1, 2]).features)  # 3 x (conv, BN, ReLU) + pool
        10
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128, 256),
        convs_per_stage: int | Sequence[int] = 2,
        drop_rate: float = 0.3,
    ) -> None:
        super().__init__()
        depths = [convs_per_stage] * len(widths) if isinstance(convs_per_stage, int) else list(convs_per_stage)
        if not widths or len(depths) != len(widths) or min(depths) < 1:
            raise ValueError(f"fer_vgg needs at least one stage and at least one conv in each, as one number or one per "
                             f"stage, got widths={list(widths)}, convs_per_stage={convs_per_stage}")
        layers: list[nn.Module] = []
        cin = in_channels
        for i, (w, depth) in enumerate(zip(widths, depths)):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(depth):
                layers += _conv_bn_relu(cin, w)
                cin = w
        self._finish(nn.Sequential(*layers), cin, num_classes, drop_rate)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1 convolution, then batch normalisation."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )


class XceptionBlock(nn.Module):
    """Two separable convolutions and a stride-2 max-pool, beside a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            SeparableConv(cin, cout), nn.ReLU(inplace=True), SeparableConv(cout, cout), nn.MaxPool2d(3, 2, 1)
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class FERXceptionNet(_PooledNet):
    """A depthwise-separable residual network for small faces, after mini-Xception: a stem of
    two 3x3 convolutions at full resolution, one :class:`XceptionBlock` per entry of ``widths``
    (each halves the map), global average pooling, dropout and a linear layer.

    Args:
        num_classes: outputs.
        in_channels: 1 (grey) or 3.
        stem_width: channels of the two stem convolutions.
        widths: channels of each residual block.
        drop_rate: dropout before the classifier.

    Example:
        >>> net = FERXceptionNet(7, in_channels=1, stem_width=8, widths=(16, 32))
        >>> net(torch.randn(2, 1, 48, 48)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stem_width: int = 32,
        widths: Sequence[int] = (64, 128, 256, 512),
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("fer_xception needs at least one block in widths")
        blocks: list[nn.Module] = [*_conv_bn_relu(in_channels, stem_width), *_conv_bn_relu(stem_width, stem_width)]
        cin = stem_width
        for w in widths:
            blocks.append(XceptionBlock(cin, w))
            cin = w
        blocks.append(nn.ReLU(inplace=True))
        self._finish(nn.Sequential(*blocks), cin, num_classes, drop_rate)
