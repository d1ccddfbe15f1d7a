"""Videos to predict on: frames decoded by OpenCV in a thread (all, or at a chosen rate), faces
searched by MTCNN in batches of frames (every frame, or every k-th and where a face is lost, on
shrunk frames where faces are large), carried between searches by optical flow, and followed
across frames as tracks (box overlap)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from lightning_fer.predict.detection import search
from lightning_fer.predict.tracking import FlowFollower, IoUTracker

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
        batch_size: looked-at frames read before their searches go to MTCNN in one call.
        search_every: search for faces on every k-th looked-at frame, and on any frame where a
            face is lost (its optical flow fails); between searches each face is carried by optical
            flow (:class:`~lightning_fer.predict.tracking.FlowFollower`) and still labelled on every
            frame; 1: search every frame. A face entering between two searches is found at the
            next one. ``benchmarks/pretrained.py`` says the speed and the label agreement with
            searching every frame.
        detect_side: search on a copy of the frame shrunk to at most this many pixels on its
            longer side (``None``: full size). MTCNN's smallest face is then 20 px of the copy: for
            a 640 px wide video at ``detect_side=320``, faces of 40 px and more are found.
    """

    fps: float | None = None
    max_gap: int = 5
    min_iou: float = 0.3
    smooth: int = 1
    assume_fps: float | None = None
    batch_size: int = 16
    search_every: int = 1
    detect_side: int | None = None

    def __post_init__(self) -> None:
        if self.search_every < 1:
            raise ValueError(f"--data.predict.video.search_every {self.search_every}: must be at least 1 (1: search "
                             "every frame)")
        if self.detect_side is not None and self.detect_side < 48:
            raise ValueError(f"--data.predict.video.detect_side {self.detect_side}: must be at least 48 pixels, or "
                             "null for full-size frames")


def is_video(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


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


class FrameReader:
    """The looked-at frames of an opened capture as ``(index, RGB frame)``, decoded and converted in
    a background thread (OpenCV lets go of the GIL while it decodes) up to ``ahead`` frames ahead of
    the consumer; a frame is looked at where ``every`` frames have passed since the last (1: all).
    ``read`` counts the frames read; an error in the thread is raised where the frames are taken."""

    def __init__(self, cap, every: float = 1.0, ahead: int = 8) -> None:
        import queue
        import threading

        self.cap, self.every, self.read = cap, every, 0
        self.queue: queue.Queue = queue.Queue(ahead)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import cv2

        next_take = 0.0
        try:
            while not self.stop.is_set():
                ok, bgr = self.cap.read()
                if not ok:
                    break
                if self.read >= next_take - 1e-9:
                    next_take += self.every
                    if not self._put((self.read, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))):
                        break
                self.read += 1
        except BaseException as err:  # noqa: BLE001 - raised again in the consumer's thread
            self.error = err
        finally:
            self._put(None)

    def __iter__(self):
        while (item := self.queue.get()) is not None:
            yield item
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the thread (the capture may be released after this)."""
        import queue

        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()


def scan_video(path: Path, detector, options: VideoOptions, min_prob: float, make_face, scan) -> None:
    """Add every face of every looked-at frame of ``path`` to ``scan`` (``make_face(frame image,
    frame, time, points, box, prob, track, number)`` builds each), and a problem row for each frame
    without a face, a video that cannot be read, and a truncated one."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        scan.problem(str(path), "cannot be opened as a video (unreadable, or not a video)", "unreadable")
        return
    reader = None
    try:
        try:
            fps = frame_rate(cap, path, options)
        except ValueError as err:
            scan.problem(str(path), str(err).split(": ", 1)[-1], "unreadable")
            return
        stated = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        every = 1.0 if not options.fps or options.fps >= fps else fps / options.fps
        reader = FrameReader(cap, every)
        k, follower = options.search_every, FlowFollower()
        tracker, pending, step, searches = IoUTracker(options.min_iou, options.max_gap), [], 0, 0
        last = (None, [], -1)  # the previous looked-at frame (grey), its faces, and the frame of the last search

        def flush():
            nonlocal step, last, searches
            planned = [j for j in range(len(pending)) if (step + j) % k == 0]
            found = dict(zip(planned, search(detector, [pending[j][1] for j in planned], min_prob, options.detect_side)))
            for j, (index, frame) in enumerate(pending):
                t = round(index / fps, 4)
                grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if k > 1 else None
                faces, searched = found.get(j), j in found
                if faces is None and last[0] is not None and last[0].shape == grey.shape:
                    faces = follower.follow(last[0], grey, last[1])  # between searches: carried by optical flow
                if faces is None:  # a face lost: search this frame
                    faces, searched = search(detector, [frame], min_prob, options.detect_side)[0], True
                searches += searched
                searched_at = index if searched else last[2]
                if not faces:
                    why = "" if searched else f", at its last search (frame {searched_at}; search_every={k})"
                    scan.problem(str(path), f"no face found (MTCNN, probability >= {min_prob}{why})", "no_face",
                                 frame=index, time=t)
                ids = tracker.update(step, [box for _, box, _ in faces])
                for n, ((pts, box, prob), track) in enumerate(zip(faces, ids)):
                    scan.faces.append(make_face(frame, index, t, pts, box, prob, track, n))
                    scan.faces[-1].searched = searched
                last = (grey, faces, searched_at)
                step += 1
            pending.clear()

        for index, frame in reader:
            if pending and pending[0][1].shape != frame.shape:
                flush()  # MTCNN batches frames of one size
            pending.append((index, frame))
            if len(pending) >= options.batch_size:
                flush()
        if pending:
            flush()
        read = reader.read
    finally:
        if reader is not None:
            reader.close()
        cap.release()
    if read == 0:
        scan.problem(str(path), "no frame could be read (empty or broken video)", "unreadable")
    elif stated and read < stated:
        scan.problem(str(path), f"truncated: {read} of the {stated} frames the container states could be read",
                     "truncated", frame=read)
    log.info("%s: %d frame(s) read at %.2f fps, every %.3g looked at, %d of the %d looked at searched; %d track(s)",
             path, read, fps, every, searches, step, tracker._next)
