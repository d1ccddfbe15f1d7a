"""Videos to predict on: frames read with OpenCV (all, or at a chosen rate), faces found by MTCNN
in batches of frames, and each face followed across frames as a track (box overlap)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class VideoOptions:
    """How ``predict`` reads videos (``--data.init_args.predict.video.fps=5`` and so on).

    Args:
        fps: frames per second to look at (``None``: every frame).
        max_gap: a track ends when its face is not seen for more than this many looked-at frames.
        min_iou: box overlap a face needs with a track's last box to continue it.
        smooth: average each track's probabilities over this many looked-at frames (centred; 1: none).
        assume_fps: the frame rate of a video whose container does not state one (``None``: such
            a video is reported, not guessed).
        batch_size: frames per MTCNN call.
    """

    fps: float | None = None
    max_gap: int = 5
    min_iou: float = 0.3
    smooth: int = 1
    assume_fps: float | None = None
    batch_size: int = 16


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


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frame_rate(cap, path: Path, options: VideoOptions) -> float:
    """The container's frame rate, or ``options.assume_fps``; a clear error when neither is known."""
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if math.isfinite(fps) and 0 < fps <= 1000:
        return fps
    if options.assume_fps:
        return float(options.assume_fps)
    raise ValueError(f"{path}: the container states no frame rate; set data.predict.video.assume_fps "
                     "(--data.init_args.predict.video.assume_fps=25) to give it")


def scan_video(path: Path, detector, options: VideoOptions, min_prob: float, make_face, scan) -> None:
    """Add every face of every looked-at frame of ``path`` to ``scan`` (``make_face(frame image,
    frame, time, points, box, prob, track, number)`` builds each), and a problem row for each frame
    without a face, a video that cannot be read, and a truncated one."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        scan.problem(str(path), "cannot be opened as a video (unreadable, or not a video)", "unreadable")
        return
    try:
        try:
            fps = frame_rate(cap, path, options)
        except ValueError as err:
            scan.problem(str(path), str(err).split(": ", 1)[-1], "unreadable")
            return
        stated = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        every = 1.0 if not options.fps or options.fps >= fps else fps / options.fps
        tracker, pending, read, step, next_take = IoUTracker(options.min_iou, options.max_gap), [], 0, 0, 0.0

        def flush():
            nonlocal step
            found = detector.detect_frames([f for _, f in pending], min_prob)
            for (index, frame), faces in zip(pending, found):
                t = round(index / fps, 4)
                if not faces:
                    scan.problem(str(path), f"no face found (MTCNN, probability >= {min_prob})", "no_face",
                                 frame=index, time=t)
                ids = tracker.update(step, [box for _, box, _ in faces])
                for k, ((pts, box, prob), track) in enumerate(zip(faces, ids)):
                    scan.faces.append(make_face(frame, index, t, pts, box, prob, track, k))
                step += 1
            pending.clear()

        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if read >= next_take - 1e-9:
                next_take += every
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if pending and pending[0][1].shape != frame.shape:
                    flush()  # MTCNN batches frames of one size
                pending.append((read, frame))
                if len(pending) >= options.batch_size:
                    flush()
            read += 1
        if pending:
            flush()
    finally:
        cap.release()
    if read == 0:
        scan.problem(str(path), "no frame could be read (empty or broken video)", "unreadable")
    elif stated and read < stated:
        scan.problem(str(path), f"truncated: {read} of the {stated} frames the container states could be read",
                     "truncated", frame=read)
    log.info("%s: %d frame(s) read at %.2f fps, every %.3g looked at; %d track(s)", path, read, fps, every,
             tracker._next)
