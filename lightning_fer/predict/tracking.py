"""Following faces through a video: track ids by box overlap between looks (:class:`IoUTracker`),
and each face's box and landmarks carried from one frame to the next by optical flow between two
searches of the detector (:class:`FlowFollower`)."""

from __future__ import annotations

import numpy as np


class IoUTracker:
    """Greedy association of each frame's boxes with the live tracks, by box overlap.

    Example:
        >>> t = IoUTracker(min_iou=0.3, max_gap=2)
        >>> t.update(0, [(0, 0, 10, 10), (50, 50, 60, 60)]), t.update(1, [(51, 50, 61, 60), (1, 0, 11, 10)])
        ([0, 1], [1, 0])
        >>> t.update(5, [(0, 0, 10, 10)])  # gone for more than 2 frames: a new track
        [2]
    """

    def __init__(self, min_iou: float = 0.3, max_gap: int = 5) -> None:
        self.min_iou, self.max_gap = min_iou, max_gap
        self.tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, last step seen)
        self._next = 0

    def update(self, step: int, boxes: list) -> list[int]:
        """Track ids for ``boxes`` (x0, y0, x1, y1) seen at look ``step``."""
        import torch
        from torchvision.ops import box_iou

        live = [(t, b) for t, (b, s) in self.tracks.items() if step - s <= self.max_gap]
        ids = [-1] * len(boxes)
        if live and boxes:
            iou = box_iou(torch.as_tensor(np.asarray(boxes, np.float64)),
                          torch.as_tensor(np.stack([b for _, b in live]), dtype=torch.float64))
            pairs = sorted(((float(iou[i, j]), i, j) for i in range(len(boxes)) for j in range(len(live))), reverse=True)
            used_b, used_t = set(), set()
            for v, i, j in pairs:
                if v < self.min_iou:
                    break
                if i not in used_b and j not in used_t:
                    ids[i] = live[j][0]
                    used_b.add(i)
                    used_t.add(j)
        for i, box in enumerate(boxes):
            if ids[i] < 0:
                ids[i], self._next = self._next, self._next + 1
            self.tracks[ids[i]] = (np.asarray(box, np.float64), step)
        return ids


class FlowFollower:
    """Carries faces from one frame to the next without the detector: points in each face (its five
    landmarks and a grid over its box) are followed by OpenCV's pyramidal Lucas-Kanade optical flow,
    forward and back; the face moves and scales as the median of the points that came back within
    ``max_error`` pixels. A face is lost (and the caller searches the frame) where fewer than
    ``min_kept`` of its points came back, or its box leaves the frame by more than half.

    Args:
        grid: points per side of the grid over the inner part of each box.
        max_error: forward-backward error, in pixels, a point may have.
        min_kept: share of a face's points that must follow it.

    Example:
        >>> import cv2
        >>> rng = np.random.default_rng(0)
        >>> texture = cv2.GaussianBlur(rng.integers(0, 255, (80, 80), dtype=np.uint8), (5, 5), 0)
        >>> a, b = np.zeros((200, 300), np.uint8), np.zeros((200, 300), np.uint8)
        >>> a[50:130, 60:140], b[53:133, 66:146] = texture, texture  # moved 6 right, 3 down
        >>> face = (np.float32([[80, 80], [120, 80], [100, 95], [85, 115], [115, 115]]), np.array([60., 50, 140, 130]), 0.99)
        >>> [(np.round(box).tolist(), p) for _, box, p in FlowFollower().follow(a, b, [face])]
        [([66.0, 53.0, 146.0, 133.0], 0.99)]
        >>> FlowFollower().follow(a, np.zeros_like(a), [face]) is None  # the face is gone: lost
        True
    """

    def __init__(self, grid: int = 6, max_error: float = 1.0, min_kept: float = 0.5) -> None:
        self.grid, self.max_error, self.min_kept = grid, max_error, min_kept

    def _points(self, points: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box
        t = np.linspace(0.15, 0.85, self.grid)
        gx, gy = np.meshgrid(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        return np.concatenate([np.asarray(points, np.float32).reshape(-1, 2),
                               np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)])

    def follow(self, before: np.ndarray, after: np.ndarray, faces: list) -> list | None:
        """``faces`` (``(points [5, 2], box, probability)`` in the grey frame ``before``) where they
        are in the grey frame ``after``, each keeping its probability; ``None`` if any is lost."""
        import cv2

        if not faces:
            return []
        starts = [self._points(pts, np.asarray(box, np.float64)) for pts, box, _ in faces]
        p0 = np.concatenate(starts).reshape(-1, 1, 2)
        lk = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(before, after, p0, None, **lk)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(after, before, p1, None, **lk)
        good = (ok1.ravel() == 1) & (ok2.ravel() == 1) & (np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < self.max_error)
        p0, p1 = p0.reshape(-1, 2), p1.reshape(-1, 2)
        h, w = after.shape[:2]
        out, at = [], 0
        for (pts, box, prob), start in zip(faces, starts):
            k = slice(at, at + len(start))
            at += len(start)
            g = good[k]
            if g.mean() < self.min_kept:
                return None
            a, b = p0[k][g], p1[k][g]
            ca, cb = np.median(a, 0), np.median(b, 0)
            da, db = np.linalg.norm(a - ca, axis=1), np.linalg.norm(b - cb, axis=1)
            scale = float(np.median(db[da > 1] / da[da > 1])) if (da > 1).sum() >= 3 else 1.0
            box = np.asarray(box, np.float64).reshape(2, 2)
            moved = ((box - ca) * scale + cb).ravel()
            inside = (min(moved[2], w) - max(moved[0], 0)) * (min(moved[3], h) - max(moved[1], 0))
            if inside < 0.5 * (moved[2] - moved[0]) * (moved[3] - moved[1]):
                return None
            out.append((((np.asarray(pts, np.float32) - ca) * scale + cb).astype(np.float32), moved, prob))
        return out
