"""Models: backbones (plain nn.Modules) and the FERClassifier LightningModule."""

from lightning_fer.models.backbones import available_backbones, create_backbone
from lightning_fer.models.classifier import FERClassifier
from lightning_fer.models.spp import SpatialPyramidPooling, SPPNet

__all__ = ["FERClassifier", "SPPNet", "SpatialPyramidPooling", "available_backbones", "create_backbone"]
