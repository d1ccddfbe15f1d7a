"""Training augmentation: :class:`AffineAugment` (one affine matrix per item, applied with each view's cut) and the same distribution through albumentations (:func:`train_augmentation`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import albumentations as A
import cv2
import numpy as np

#: ImageNet statistics: views are normalised with them (pretrained backbones expect it).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The ImageNet mean as a pixel: padding and masked parts take it, so they normalise to zero.
MEAN_PIXEL = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)


def train_augmentation(
    hflip: float = 0.5,
    rotate: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.05,
    brightness_contrast: float = 0.2,
    grayscale: float = 0.1,
) -> A.Compose:
    """The default training augmentation; geometry moves the keypoints too."""
    return A.Compose(
        [
            A.HorizontalFlip(p=hflip),
            A.Affine(
                scale=scale,
                rotate=(-rotate, rotate),
                translate_percent=(-translate, translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=MEAN_PIXEL,
                p=0.8,
            ),
            A.RandomBrightnessContrast(brightness_contrast, brightness_contrast, p=0.5),
            A.ToGray(num_output_channels=3, p=grayscale),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )


class AffineAugment:
    """The default training augmentation, drawn as parameters and applied as one warp per view.

    The same distribution as :func:`train_augmentation` (albumentations): a horizontal flip with
    probability ``hflip``; with probability ``p_affine`` an affine map about the centre with
    scale, rotation (degrees) and shift (fraction of the side, per axis) drawn uniformly; with
    probability ``p_brightness_contrast`` brightness ``+ b * 255`` and contrast ``* (1 + c)``,
    ``b, c`` uniform in ``±brightness_contrast``; grey with probability ``grayscale``.

    Example:
        >>> aug = AffineAugment(hflip=1.0, p_affine=0.0)
        >>> aug.set_random_seed(0)
        >>> m, flipped, _ = aug.sample(100, 100)
        >>> flipped, m[0].round(3).tolist()
        (True, [-1.0, 0.0, 100.0])
    """

    def __init__(
        self,
        hflip: float = 0.5,
        rotate: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.05,
        p_affine: float = 0.8,
        brightness_contrast: float = 0.2,
        p_brightness_contrast: float = 0.5,
        grayscale: float = 0.1,
    ) -> None:
        self.hflip, self.rotate, self.scale, self.translate = hflip, rotate, tuple(scale), translate
        self.p_affine, self.brightness_contrast = p_affine, brightness_contrast
        self.p_brightness_contrast, self.grayscale = p_brightness_contrast, grayscale
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def sample(self, width: float, height: float) -> tuple[np.ndarray, bool, tuple[float, float, bool] | None]:
        """A 3x3 matrix on a ``width`` x ``height`` canvas, whether it mirrors, and the
        photometric draw ``(contrast, brightness, grey)`` or ``None``."""
        r = self.rng
        m = np.eye(3)
        flipped = bool(r.random() < self.hflip)
        if flipped:
            m = np.array([[-1.0, 0, width], [0, 1, 0], [0, 0, 1]])
        if r.random() < self.p_affine:
            s = r.uniform(*self.scale)
            a = math.radians(r.uniform(-self.rotate, self.rotate))
            tx, ty = r.uniform(-self.translate, self.translate, 2) * (width, height)
            cx, cy = width / 2, height / 2
            ca, sa = s * math.cos(a), s * math.sin(a)
            # Rotate and scale about the centre (counter-clockwise on screen, as OpenCV), then shift.
            aff = np.array([[ca, sa, cx - ca * cx - sa * cy + tx], [-sa, ca, cy + sa * cx - ca * cy + ty], [0, 0, 1]])
            m = aff @ m
        contrast, brightness = 1.0, 0.0
        if r.random() < self.p_brightness_contrast:
            bc = self.brightness_contrast
            contrast, brightness = 1.0 + r.uniform(-bc, bc), r.uniform(-bc, bc) * 255.0
        grey = bool(r.random() < self.grayscale)
        photo = (contrast, brightness, grey) if (contrast, brightness, grey) != (1.0, 0.0, False) else None
        return m, flipped, photo


@dataclass(frozen=True)
class TrainingData:
    """How the training split is drawn and augmented: the data module's ``training`` option group
    (``--data.training.augment=false``, ``--data.training.fraction=0.5``).

    Args:
        augment: augment training images.
        augmentation: ``affine`` (:class:`AffineAugment`: one warp per view) or ``albumentations``
            (:func:`train_augmentation`: the same distribution, ~4x slower per face).
        balanced_sampler: draw training samples with probability inverse to their class size.
        fraction: train on a stratified, seeded subset of this share of the training split
            (validation and test splits stay whole), to fit a time budget.
        bootstrap: train on a bootstrap resample of the training split (as many draws as it has
            images, with replacement; about 63% of them distinct), drawn with this seed: a bagged
            member. ``None``: the split as it is. Members with different seeds see different
            resamples; the same seed draws the same one.
    """

    augment: bool = True
    augmentation: Literal["affine", "albumentations"] = "affine"
    balanced_sampler: bool = False
    fraction: float = 1.0
    bootstrap: int | None = None

    def __post_init__(self) -> None:
        if self.augmentation not in ("affine", "albumentations"):
            raise ValueError(f"training.augmentation must be 'affine' or 'albumentations', got {self.augmentation!r}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"training.fraction must be in (0, 1], got {self.fraction}")
        if self.bootstrap is not None and (isinstance(self.bootstrap, bool) or int(self.bootstrap) < 0):
            raise ValueError(f"training.bootstrap must be a seed (an integer >= 0) or null, got {self.bootstrap!r}")

    def augmenter(self):
        """The augmentation object the training transform applies (``None``: off)."""
        if not self.augment:
            return None
        return AffineAugment() if self.augmentation == "affine" else train_augmentation()
