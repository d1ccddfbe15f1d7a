"""``python -m lightning_fer serve``: a web page and a JSON API on a shipped model (or a checkpoint),
thin fronts on :class:`lightning_fer.Predictor`.

    pip install "lightning-fer[serve]"
    python -m lightning_fer serve --pretrained fer2013          # http://127.0.0.1:8000/

Built on FastAPI and uvicorn: typed endpoints with OpenAPI docs at ``/docs`` for free, multipart
uploads, and a plain ASGI app that tests drive in-process (Starlette's ``TestClient``); Gradio would
bring its own front end and queue but hide the JSON API a script wants behind its own protocol.

Endpoints: ``GET /`` (the page), ``POST /predict`` (multipart field ``file``: a photo or a video;
answers ``{"faces": [...], "rows": [...], "csv": "..."}``, each face the dict of
:func:`lightning_fer.analyze`, the rows and CSV those ``predict`` writes), ``GET /health``,
``GET /models``. One model and one detector are loaded at start and shared; inference runs one
request at a time under a lock, and a bounded queue answers 503 when full. An upload is written
to a temporary folder that is removed after the answer; a bad upload gets a 4xx with a one-line
JSON ``detail``, never a stack trace.
"""


import logging
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lightning_fer.data.sources import IMAGE_EXTENSIONS
from lightning_fer.predict.video import VIDEO_EXTENSIONS, VideoOptions

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent / "web" / "index.html"


@dataclass(frozen=True)
class ServeLimits:
    """What one upload may be (every field a ``serve`` option: ``--max_upload_mb 10``).

    Args:
        max_upload_mb: bytes of one upload, in MB (413 above).
        max_pixels: pixels of one photo (413 above; read from its header before decoding).
        max_video_seconds: length of one video (413 above).
        video_fps: frames per second looked at in a video (``None``: every frame).
        content_types: accepted ``Content-Type`` prefixes (415 otherwise).
        max_queue: requests waiting or running at once (503 above).
    """

    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_video_seconds: float = 60.0
    video_fps: float | None = 5.0
    content_types: tuple[str, ...] = ("image/", "video/", "application/octet-stream")
    max_queue: int = 8


class UploadError(ValueError):
    """A bad upload: its HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _check_photo(path: Path, limits: ServeLimits) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError as err:
        raise UploadError(413, f"refused as a decompression bomb ({err})") from None
    except Exception:  # noqa: BLE001 - the predictor names what is wrong with it (not an image, truncated)
        return
    if w * h > limits.max_pixels:
        raise UploadError(413, f"the photo has {w}x{h} = {w * h:,} pixels, over the limit of {limits.max_pixels:,}")


def _check_video(path: Path, limits: ServeLimits) -> None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UploadError(422, "cannot be opened as a video (unreadable, or not a video)")
        fps, frames = cap.get(cv2.CAP_PROP_FPS) or 0.0, cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0
        ok, _ = cap.read()
        if not ok:
            raise UploadError(422, "a video with no frame that can be read")
    finally:
        cap.release()
    if fps > 0 and frames / fps > limits.max_video_seconds:
        raise UploadError(413, f"the video lasts {frames / fps:.1f} s, over the limit of {limits.max_video_seconds:g} s")


class Service:
    """The shared predictor, the lock that runs one inference at a time, and the queue's count."""

    def __init__(self, predictor, limits: ServeLimits, model_name: str) -> None:
        self.predictor, self.limits, self.model_name = predictor, limits, model_name
        self.lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.waiting = 0

    def enter(self) -> None:
        with self._count_lock:
            if self.waiting >= self.limits.max_queue:
                raise UploadError(503, f"busy: {self.waiting} request(s) queued or running (limit "
                                       f"{self.limits.max_queue}); retry in a moment")
            self.waiting += 1

    def leave(self) -> None:
        with self._count_lock:
            self.waiting -= 1

    def predict(self, data: bytes, filename: str, content_type: str | None) -> dict:
        """The answer for one upload (:class:`UploadError` for a bad one)."""
        from lightning_fer.predict.writers import write_rows

        lim = self.limits
        if content_type and not content_type.startswith(lim.content_types):
            raise UploadError(415, f"content type {content_type!r} is not accepted; send a photo or a video "
                                   f"({', '.join(lim.content_types)})")
        if len(data) > lim.max_upload_mb * 1e6:
            raise UploadError(413, f"the upload is {len(data) / 1e6:.1f} MB, over the limit of {lim.max_upload_mb:g} MB")
        if not data:
            raise UploadError(422, "empty upload (0 bytes)")
        suffix = Path(filename or "").suffix.lower()
        if suffix not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            suffix = ".mp4" if (content_type or "").startswith("video/") else ".jpg"
        with tempfile.TemporaryDirectory(prefix="lightning_fer_serve_") as tmp:  # removed after the answer
            path = Path(tmp) / f"upload{suffix}"  # the client's name is never a path here
            path.write_bytes(data)
            video = suffix in VIDEO_EXTENSIONS
            (_check_video if video else _check_photo)(path, lim)
            with self.lock:
                rows = self.predictor.rows(self.predictor.scan([str(path)]))
            for r in rows:
                r["file"] = filename or path.name
            bad = [r for r in rows if r["error"] and "frame" not in r and not r["error"].startswith("no face found")]
            if bad:
                raise UploadError(422, bad[0]["error"])
            write_rows(rows, Path(tmp) / "rows.csv")  # the CSV predict writes, from the same rows
            text = (Path(tmp) / "rows.csv").read_text(encoding="utf-8")
        faces = [self.predictor.face(r) for r in rows if not r["error"]]
        return {"faces": faces, "rows": rows, "csv": text, "classes": self.predictor.class_names, "video": video}


def create_app(predictor, limits: ServeLimits = ServeLimits(), model_name: str = "model"):  # noqa: B008
    """The FastAPI app over a :class:`~lightning_fer.predict.api.Predictor`."""
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    service = Service(predictor, limits, model_name)
    app = FastAPI(title="lightning_fer", summary="Facial expressions of every face in a photo or a video",
                  version=_version())
    app.state.service = service

    @app.exception_handler(UploadError)
    async def _bad_upload(request: Request, err: UploadError):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):  # never a stack trace to the client
        log.exception("serve: %s failed", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", model_name)

    @app.get("/health")
    def health() -> dict:
        """Whether the model is loaded, and the queue."""
        return {"status": "ok", "model": model_name, "classes": predictor.class_names, "queued": service.waiting}

    @app.get("/models")
    def models() -> dict:
        """The shipped models (as ``python -m lightning_fer pretrained`` lists them) and the one served."""
        from lightning_fer import zoo

        listed = [{"name": n, "what": e["what"], "accuracy": (e.get("publictest") or {}).get("acc"),
                   "macro_f1": (e.get("publictest") or {}).get("f1"), "bytes": e["bytes"]} for n, e in zoo.registry().items()]
        return {"serving": model_name, "models": listed}

    @app.post("/predict")
    async def predict(file: UploadFile = File(..., description="a photo or a short video")) -> dict:  # noqa: B008
        """Every face in the uploaded photo or video: box, landmarks, face probability, label and
        class probabilities (the dicts of ``lightning_fer.analyze``), and the rows and CSV that
        ``python -m lightning_fer predict`` writes for it."""
        service.enter()
        try:
            data = await file.read()
            return await run_in_threadpool(service.predict, data, file.filename or "", file.content_type)
        finally:
            service.leave()

    return app


def _version() -> str:
    from lightning_fer import __version__

    return __version__


def add_arguments(parser) -> None:
    """``serve``'s options on ``parser`` (a jsonargparse parser: the command line's ``serve``
    subcommand is this)."""
    parser.add_argument("--pretrained", type=str | None, default=None, help="a shipped model (default fer2013)")
    parser.add_argument("--ckpt_path", type=str | None, default=None,
                        help="a FERClassifier checkpoint instead (or the weights of --config's model)")
    parser.add_argument("--config", type=str | None, default=None,
                        help="a model config as for predict (an ensemble of member checkpoints, say)")
    parser.add_argument("--host", type=str, default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--face_box", type=Literal["auto", "image"], default="auto")
    for f, v in asdict(ServeLimits()).items():
        if f != "content_types":
            parser.add_argument(f"--{f}", type=float | None if isinstance(v, float) or v is None else int, default=v)


def parser():
    """A parser of ``serve``'s options alone."""
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="python -m lightning_fer serve", description=__doc__)
    add_arguments(p)
    return p


def make_predictor(args):
    """The :class:`~lightning_fer.predict.api.Predictor` the options ask for, and the name the page shows:
    a shipped model, a checkpoint, or a config (built as ``predict`` builds it; its data settings
    kept)."""
    from lightning_fer.predict.api import Predictor

    video = VideoOptions(fps=args.video_fps or None)
    if sum(bool(x) for x in (args.pretrained, args.config)) > 1 or (args.pretrained and args.ckpt_path):
        raise SystemExit("error: serve takes one of --pretrained NAME, --ckpt_path CKPT, or --config FILE [--ckpt_path CKPT]")
    if not args.config:
        name = args.ckpt_path or args.pretrained or "fer2013"
        return Predictor(name, face_box=args.face_box, video=video), Path(name).name
    import torch

    from lightning_fer.build import build

    built = build([args.config], {"trainer": {"logger": False}})
    if args.ckpt_path:
        built.model.load_state_dict(torch.load(args.ckpt_path, map_location="cpu", weights_only=True)["state_dict"])
    dm = built.datamodule
    data = {"views": list(dm.views), "image_size": dm.image_size, "channels": dm.channels}
    return Predictor(built.model.eval(), face_box=args.face_box, video=video, data=data), Path(args.config).stem


def run(args) -> None:
    """Load the model and the detector once, then serve until stopped (``args``: a parse of
    :func:`add_arguments`'s options)."""
    try:
        import uvicorn
    except ImportError:
        raise SystemExit('error: serve needs its extra: pip install "lightning-fer[serve]"') from None
    limits = ServeLimits(args.max_upload_mb, int(args.max_pixels), args.max_video_seconds, args.video_fps or None,
                         max_queue=int(args.max_queue))
    predictor, name = make_predictor(args)
    log.info("serve: %s on http://%s:%d/ (API docs at /docs)", name, args.host, args.port)
    uvicorn.run(create_app(predictor, limits, name), host=args.host, port=args.port, log_level="warning")
