"""``predict`` through ONNX Runtime on a CPU: the member or ensemble is exported once (cached
beside its checkpoint), checked against the eager model, and run by ONNX Runtime where that is
faster than eager PyTorch on this machine (``--data.predict.runtime auto``, the default), or
always (``onnx``), or never (``eager``). The choice is said in a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "eager", "onnx")


def _timed(fn, x: torch.Tensor, repeats: int = 3) -> float:
    fn(x)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t) / repeats


class OnnxPredict(Callback):
    """Run ``predict`` through ONNX Runtime (see the module's docstring).

    Args:
        runtime: ``auto`` (ONNX Runtime where it is faster than eager on a CPU), ``onnx`` or ``eager``.
        cache_dir: where the exported model goes (beside the checkpoint; ``None``: ``runs/predict/onnx``).
        batch: the batch size of the speed comparison.
    """

    def __init__(self, runtime: str = "auto", cache_dir: str | Path | None = None, batch: int = 64) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"predict.runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.runtime, self.cache_dir, self.batch = runtime, Path(cache_dir or "runs/predict/onnx"), batch
        self.session = None
        self._restore = None
        self.chosen = "eager"

    # -- the exported model --------------------------------------------------------------------
    def onnx_path(self, module, example: torch.Tensor) -> Path:
        """The exported file: named by a hash of the module's kind, weights and input shape
        (past the batch), so a changed model is exported again and an unchanged one once."""
        h = hashlib.sha256(f"{type(module).__name__}{tuple(example.shape[1:])}".encode())
        for k, v in module.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes()[:4096])
            h.update(str(tuple(v.shape)).encode())
        return self.cache_dir / f"{type(module).__name__.lower()}-{h.hexdigest()[:16]}.onnx"

    def _session(self, module, example: torch.Tensor):
        import onnxruntime as ort

        from lightning_fer.export import export
        from lightning_fer.files import write_text
        from lightning_fer.shipped import sha256

        path = self.onnx_path(module, example)
        digest = path.with_suffix(".sha256")
        if path.is_file() and (not digest.is_file() or digest.read_text().strip() != sha256(path)):
            log.warning("predict: the cached export %s was changed or cut (its SHA-256 differs from the one written "
                        "with it): exported again", path)
            path.unlink()
        if not path.is_file():
            export(module, path, "onnx", example)  # checked against eager (1e-4) before it is kept
            write_text(digest, sha256(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), path

    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"input": x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    # -- hooks ---------------------------------------------------------------------------------
    def on_predict_start(self, trainer, pl_module) -> None:
        from lightning_fer.export import example_input, plain

        if self.runtime == "eager":
            return
        if pl_module.device.type != "cpu":
            log.info("predict: eager PyTorch on %s (ONNX Runtime is used on CPUs only)", pl_module.device)
            return
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if self.runtime == "onnx":
                raise ImportError("predict.runtime=onnx needs the onnx extra: pip install 'lightning-fer[onnx]'") from None
            log.info("predict: eager PyTorch (onnxruntime is not installed: pip install 'lightning-fer[onnx]')")
            return
        was_training = pl_module.training
        pl_module.eval()
        dm = trainer.datamodule
        size = getattr(dm, "image_size", None)

        def example(batch: int) -> torch.Tensor:
            """An input shaped as the data's batches: the ensemble's views at the data's size
            and channels (a member's input is its own, after the classifier's conversion)."""
            x = example_input(pl_module, batch=batch, image_size=size if x_is_views else None)
            if x_is_views and getattr(dm, "channels", None):
                x = x[:, :, : int(dm.channels)]
            return x

        from lightning_fer.ensemble.module import EnsembleModule

        x_is_views = isinstance(pl_module, EnsembleModule)
        self.session, path = self._session(pl_module, example(2))
        net = plain(pl_module).eval()
        if self.runtime == "auto":
            x = example(self.batch)
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                eager = _timed(net, x)
            ort_s = _timed(self.run, x)
            faster = ort_s < eager
            self._say(path, eager, ort_s, faster)
            if not faster:
                self.session = None
                pl_module.train(was_training)
                return
        else:
            log.info("predict: ONNX Runtime (predict.runtime=onnx), %s", path)
        self.chosen = "onnx"
        self._patch(pl_module)

    def _say(self, path: Path, eager: float, ort_s: float, faster: bool) -> None:
        ms = lambda s: f"{1000 * s / self.batch:.2f} ms/face"  # noqa: E731
        log.info("predict: %s (ONNX Runtime %s, eager PyTorch %s on this CPU, batch %d: %.2fx; %s)",
                 "ONNX Runtime" if faster else "eager PyTorch", ms(ort_s), ms(eager), self.batch, eager / ort_s, path)
        record = path.with_suffix(".speed.json")
        try:
            record.write_text(json.dumps({"onnx_s": ort_s, "eager_s": eager, "batch": self.batch}))
        except OSError:
            pass

    def _patch(self, pl_module) -> None:
        from lightning_fer.ensemble.module import EnsembleModule

        original = pl_module.forward
        run = self.run
        if isinstance(pl_module, EnsembleModule):
            def forward(views, view_mask=None, face=None):
                if view_mask is not None and not bool(view_mask.all()):
                    return original(views, view_mask, face)  # missing views: the eager masking rule
                return run(views).to(views.device)
        else:
            def forward(x):
                return run(x).to(x.device)
        pl_module.forward = forward
        self._restore = (pl_module, original)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._restore is not None:
            module, _ = self._restore
            module.__dict__.pop("forward", None)  # the class's forward again
            self._restore = None
        self.session = None
