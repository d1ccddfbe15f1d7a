"""Image decoding: a strict checker for ``prepare_data()`` and a fast reader for training."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def decoding(label) -> Iterator[None]:
    """Decoding errors raised inside as :class:`ImageReadError` naming ``label`` and why."""
    try:
        yield
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{label}: refused as a decompression bomb ({err}); shrink it, or raise "
                             "PIL.Image.MAX_IMAGE_PIXELS if it is a genuine photo") from None
    except FileNotFoundError:
        raise ImageReadError(f"{label}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not an image (unrecognised bytes)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{label}: cannot decode: {err}") from None


def load_image_checked(path: str) -> np.ndarray:
    """Decode the whole file strictly (truncated files fail) into RGB uint8 ``[H, W, 3]``.

    Raises:
        ImageReadError: naming the file and why it cannot be used.
    """
    with decoding(path), Image.open(path) as im:
        im.load()
        arr = _to_rgb8(im)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(f"{path}: degenerate image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


#: Photos are detected on at most this many pixels on their longer side (larger ones are decoded
#: reduced where the format allows, then shrunk): an 8000x8000 photo costs what a 2048 px one does.
MAX_PHOTO_SIDE = 2048


def read_photo(source, max_side: int | None = MAX_PHOTO_SIDE, name: str | None = None) -> tuple[np.ndarray, float]:
    """A photo to find faces in, as a person sees it: RGB uint8 ``[H, W, 3]``, turned upright by
    its EXIF orientation (phone photos are often stored sideways), and shrunk so that its longer
    side is at most ``max_side``; and the scale of the result (its pixels per pixel of the upright
    original: 1.0 when not shrunk). Boxes found on it are divided by the scale to give the
    original's pixels.

    ``source``: a path, a PIL image or an RGB (or grey) uint8 array (arrays are taken as they are).
    Training data is read as stored (:func:`read_image`), never turned: its annotations were made on
    the stored pixels.

    Raises:
        ImageReadError: naming the file (or ``name``) and why: missing, empty, not an image,
            truncated, a decompression bomb (more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``
            allows twice over), or degenerate (smaller than 2x2).

    Example:
        >>> img, scale = read_photo(np.zeros((4000, 1000, 3), np.uint8))
        >>> img.shape, scale
        ((2048, 512, 3), 0.512)
    """

    label = name or str(source)
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else np.repeat(source[..., None], 3, axis=2)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ImageReadError(f"{label}: an array photo must be uint8 RGB [H, W, 3] (or grey [H, W]), "
                                 f"got {arr.dtype} {tuple(source.shape)}")
        arr, full = arr[..., :3], max(source.shape[:2])
    else:
        with decoding(label):
            arr, full = _decode_upright(source, label, max_side)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(f"{label}: degenerate image of shape {tuple(arr.shape)} (smaller than 2x2)")
    h, w = arr.shape[:2]
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        arr = cv2.resize(arr, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr), max(arr.shape[:2]) / full


def _decode_upright(source, label: str, max_side: int | None) -> tuple[np.ndarray, int]:
    """Decode a file or PIL image upright; and the longer side of the upright original (before a
    reduced decode)."""
    from PIL import ImageOps

    if isinstance(source, Image.Image):
        im, own = source, False
    else:
        if os.path.isfile(source) and os.path.getsize(source) == 0:
            raise ImageReadError(f"{label}: empty file (0 bytes)")
        fast = _decode_whole_with_opencv(source)
        if fast is not None:
            return fast, max(fast.shape[:2])
        im, own = Image.open(source), True
    try:
        full = max(im.size)
        if max_side and full > 2 * max_side and im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 of the size: bounded memory
        im.load()
        upright = ImageOps.exif_transpose(im) or im
        return _to_rgb8(upright), full
    finally:
        if own:
            im.close()


#: Files up to this size that are whole JPEGs or PNGs are decoded by OpenCV (about 10x faster than
#: Pillow on a 48 px face, EXIF orientation applied the same way); others, and anything OpenCV
#: cannot read, by Pillow, which also names what is wrong with a broken file.
OPENCV_PHOTO_BYTES = 1 << 20


def _decode_whole_with_opencv(path) -> np.ndarray | None:
    """RGB uint8 of a small JPEG or PNG file that ends as a whole one does (a JPEG's end-of-image
    marker, a PNG's ``IEND`` chunk: a truncated file goes to Pillow, which refuses it), turned
    upright by its EXIF orientation; ``None`` otherwise."""
    try:
        if os.path.getsize(path) > OPENCV_PHOTO_BYTES:
            return None
        buf = np.fromfile(path, dtype=np.uint8)
    except (OSError, TypeError, ValueError):
        return None
    head, tail = buf[:8].tobytes(), buf[-12:].tobytes()
    jpeg = head[:3] == b"\xff\xd8\xff" and tail.rstrip(b"\0").endswith(b"\xff\xd9")
    png = head == b"\x89PNG\r\n\x1a\n" and tail[4:8] == b"IEND"
    size = _stated_size(memoryview(buf), png) if (jpeg or png) else None  # no copy of the file
    if size is None or size[0] * size[1] > OPENCV_PHOTO_PIXELS:
        return None  # large ones (decompression bombs among them) go to Pillow, which checks and shrinks them
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if img is None or img.ndim != 3:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


#: ... and at most this many pixels, as their headers state (a small file can state a huge image).
OPENCV_PHOTO_PIXELS = MAX_PHOTO_SIDE * MAX_PHOTO_SIDE


def _stated_size(data: bytes | memoryview, png: bool) -> tuple[int, int] | None:
    """Width and height a PNG's ``IHDR`` or a JPEG's start-of-frame marker states; ``None`` where
    none is found."""
    if png:
        return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) if data[12:16] == b"IHDR" else None
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


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
