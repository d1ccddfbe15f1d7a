"""Image decoding: a strict checker for ``prepare_data()`` and a fast reader for training."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

cv2.setNumThreads(1)  # one decode per DataLoader worker; OpenCV's own threads only contend


class ImageReadError(OSError):
    """An image could not be decoded; the message names the file and the reason."""


def _to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        arr = (arr.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)  # 16-bit -> 8-bit as OpenCV does
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode != "RGB":
        im = im.convert("RGB")  # L, P, LA, RGBA, CMYK, YCbCr, 1 ...
    return np.asarray(im)


def load_image_checked(path: str) -> np.ndarray:
    """Decode the whole file strictly (truncated files fail) into RGB uint8 ``[H, W, 3]``.

    Raises:
        ImageReadError: naming the file and why it cannot be used.
    """
    try:
        with Image.open(path) as im:
            im.load()
            arr = _to_rgb8(im)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (unrecognised bytes)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: cannot decode: {err}") from None
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(f"{path}: degenerate image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image(path: str) -> np.ndarray:
    """Fast RGB uint8 ``[H, W, 3]`` decode for the training loop (OpenCV, then Pillow).

    Greyscale comes out as 3 channels, 16-bit as 8-bit, CMYK as RGB. EXIF orientation is ignored
    on both paths so that pixel coordinates match annotations made on the stored pixels.
    """
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if img is None:
        return load_image_checked(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
