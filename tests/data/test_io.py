"""Reading photos: whole JPEGs and PNGs go through OpenCV (faster), everything else and anything
broken through Pillow; both give the same upright pixels, and a truncated file is still refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lightning_fer.data.io as io
from lightning_fer.data.io import ImageReadError, read_photo


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((60, 90, 3), np.uint8)
    img[:30, :45] = (250, 20, 20)  # a red corner: turning is visible
    return np.clip(img + rng.integers(0, 5, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["jpeg_exif", "png", "grey_png", "rgba_png"])
def test_opencv_and_pillow_read_the_same_upright_pixels(tmp_path, kind, monkeypatch):
    img = _photo()
    path = tmp_path / ("a.jpg" if kind.startswith("jpeg") else "a.png")
    if kind == "jpeg_exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to view
        Image.fromarray(img).save(path, exif=exif, quality=95)
    elif kind == "grey_png":
        Image.fromarray(img[..., 0]).save(path)
    elif kind == "rgba_png":
        Image.fromarray(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])).save(path)
    else:
        Image.fromarray(img).save(path)
    assert io._decode_whole_with_opencv(path) is not None  # the fast path took it
    fast, scale = read_photo(path)
    monkeypatch.setattr(io, "OPENCV_PHOTO_BYTES", -1)  # Pillow only
    slow, _ = read_photo(path)
    assert fast.shape == slow.shape and scale == 1.0
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1
    if kind == "jpeg_exif":
        assert fast.shape[:2] == (90, 60) and fast[:30, -30:, 0].mean() > 200  # upright: the red corner top right


def test_a_truncated_jpeg_is_refused_not_half_read(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_photo()).save(path, quality=95)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert io._decode_whole_with_opencv(path) is None
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_photo(path)


def test_a_small_file_that_states_a_huge_image_goes_to_pillow_and_is_refused_as_a_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (14000, 14000)).save(path)  # about 24 KB, 196 million pixels
    assert path.stat().st_size < io.OPENCV_PHOTO_BYTES
    assert io._stated_size(path.read_bytes(), png=True) == (14000, 14000)
    assert io._decode_whole_with_opencv(path) is None  # never decoded by OpenCV
    with pytest.raises(ImageReadError, match="bomb.png: refused as a decompression bomb"):
        read_photo(path)


def test_the_stated_size_of_a_jpeg_is_read_from_its_frame_header(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.fromarray(_photo()).save(path, quality=90)
    assert io._stated_size(path.read_bytes(), png=False) == (90, 60)
