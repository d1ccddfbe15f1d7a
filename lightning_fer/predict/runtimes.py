"""``predict`` through ONNX Runtime on a CPU: the member or ensemble is exported once (cached
beside its checkpoint), checked against the eager model, and run by ONNX Runtime where that is
faster than eager PyTorch on this machine (``--data.predict.runtime auto``, the default), or
always (``onnx``), or never (``eager``). A shipped model's int8 version (:mod:`lightning_fer.quantize`)
is one more candidate of ``auto`` where it passed its ship-time accuracy check and agrees with
float32 on the first batch of faces, and is used by ``int8``. The choice is said in a log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "eager", "onnx", "int8")


def predict_example(module, image_size: int | None, channels: int | None, batch: int) -> torch.Tensor:
    """An input shaped as predict's batches reach the module: an ensemble's views at the data's
    size and channels, a member's own input (after the classifier's conversion); its shape names the
    export (:meth:`OnnxPredict.onnx_path`), so a shipped int8 version is found by it."""
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.export import example_input

    views = isinstance(module, EnsembleModule)
    x = example_input(module, batch=batch, image_size=image_size if views else None)
    return x[:, :, : int(channels)] if views and channels else x


def _ort_session(path: Path):
    """An ONNX Runtime CPU session on ``path``, with as many threads as PyTorch uses."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feed(x: torch.Tensor) -> dict:
    """A batch as the exported graph's input."""
    return {"input": x.detach().float().cpu().contiguous().numpy()}


def _timed(fn, x: torch.Tensor, repeats: int = 3) -> float:
    fn(x)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t) / repeats


class OrtRunner:
    """An ONNX Runtime session as the callable a module's ``predict_step`` runs its network through
    (its ``predict_runtime``): a batch in, the graph's output as a tensor on the batch's device.
    With ``check`` (the float32 session, for an int8 ``session``), the first batch of real faces is
    also run in float32 and int8 is kept only where it gives float32's labels on at least
    :data:`~lightning_fer.quantize.MIN_AGREEMENT` of them; else float32 runs from there on.

    Example:
        >>> import numpy as np
        >>> class Doubling:  # anything with ONNX Runtime's ``run``
        ...     def run(self, names, feed):
        ...         return [feed["input"] * 2]
        >>> OrtRunner(Doubling(), name="onnx")(torch.ones(1, 2)).tolist()
        [[2.0, 2.0]]
    """

    def __init__(self, session, check=None, name: str = "onnx") -> None:
        self.session, self.check, self.name = session, check, name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = _feed(x)
        out = self.session.run(None, feed)[0]
        if self.check is not None:  # int8's first batch of real faces: the quick agreement check
            from lightning_fer.quantize import MIN_AGREEMENT, label_agreement

            reference = self.check.run(None, feed)[0]
            agree = label_agreement(out, reference)
            if agree < MIN_AGREEMENT:
                log.warning("predict: int8 gave float32's labels on %.1f%% of the first %d faces (< %.0f%%): "
                            "float32 ONNX Runtime for the rest of this run", 100 * agree, len(out), 100 * MIN_AGREEMENT)
                self.session, self.name, out = self.check, "onnx", reference
            else:
                log.info("predict: int8 agrees with float32 on %.1f%% of the first %d faces", 100 * agree, len(out))
            self.check = None
        return torch.from_numpy(out).to(x.device)


@contextlib.contextmanager
def running(module, runner: OrtRunner | None):
    """Inside the block, ``module``'s ``predict_step`` runs its network through ``runner``
    (``None``: its own forward); the module's earlier runtime is back after it."""
    before = module.predict_runtime
    module.predict_runtime = runner
    try:
        yield module
    finally:
        module.predict_runtime = before


class OnnxPredict(Callback):
    """Run ``predict`` through ONNX Runtime (see the module's docstring).

    Args:
        runtime: ``auto`` (the fastest of eager, ONNX Runtime and a checked int8 version on a CPU),
            ``onnx``, ``int8`` (a shipped model's int8 version) or ``eager``.
        cache_dir: where the exported model goes (beside the checkpoint; ``None``: ``runs/predict/onnx``).
        batch: the batch size of the speed comparison.
    """

    def __init__(self, runtime: str = "auto", cache_dir: str | Path | None = None, batch: int = 64) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"predict.runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.runtime, self.cache_dir, self.batch = runtime, Path(cache_dir or "runs/predict/onnx"), batch
        self.runner: OrtRunner | None = None  # what the module runs its network through, once chosen
        self._restore = None
        self.chosen = "eager"

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
        return _ort_session(path), path

    def int8_session(self, export_path: Path, required: bool):
        """The shipped int8 version of the export at ``export_path`` where it passed its ship-time
        accuracy check (or, with ``required``, wherever it exists), else ``None`` with a log line
        saying why."""

        from lightning_fer.options import OptionError
        from lightning_fer.quantize import passes
        from lightning_fer.shipped import int8_for

        found = int8_for(export_path.stem)
        ok, why = passes(found[1] if found else None)
        if found is None and required:
            raise OptionError(f"--data.predict.runtime int8: {why} (int8 versions ship with the shipped models: "
                              "python -m lightning_fer pretrained); use auto or onnx")
        if not ok and not required:
            log.info("predict: int8 not considered: %s", why)
            return None
        if not ok:
            log.warning("predict: int8 as asked, though it failed its ship-time check: %s", why)
        return _ort_session(found[0])

    def attach(self, pl_module, size: int | None, channels: int | None, forward_context=contextlib.nullcontext) -> str:
        """Choose the runtime for ``pl_module`` on inputs of the data's ``size`` and ``channels``
        and keep it as :attr:`runner` (``None`` for eager), which the module's ``predict_step`` is then
        run through (:func:`running`; the callback does it from ``on_predict_start`` to
        ``on_predict_end``); returns the choice. The module's ``forward`` is never replaced."""
        from lightning_fer.export import plain

        if self.runtime == "eager":
            return self.chosen
        if pl_module.device.type != "cpu":
            log.info("predict: eager PyTorch on %s (ONNX Runtime is used on CPUs only)", pl_module.device)
            return self.chosen
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if self.runtime == "onnx":
                raise ImportError("predict.runtime=onnx needs the onnx extra: pip install 'lightning-fer[onnx]'") from None
            log.info("predict: eager PyTorch (onnxruntime is not installed: pip install 'lightning-fer[onnx]')")
            return self.chosen
        was_training = pl_module.training
        pl_module.eval()

        def example(batch: int) -> torch.Tensor:
            return predict_example(pl_module, size, channels, batch)

        try:
            float32, path = self._session(pl_module, example(2))
        except Exception as err:  # noqa: BLE001 - an op ONNX lacks (adaptive pooling to an uneven size ...): said
            inner = err
            while inner.__cause__ is not None:  # the exporter wraps the reason (the op it has no function for)
                inner = inner.__cause__
            said = re.sub(r"\x1b\[[0-9;]*m", "", str(inner)).strip().splitlines()
            why = f"{type(inner).__name__}: {said[0][:160]}" if said else type(inner).__name__
            pl_module.train(was_training)
            if self.runtime != "auto":
                from lightning_fer.options import OptionError

                raise OptionError(f"--data.predict.runtime {self.runtime}: this model does not export to ONNX ({why}); "
                                  "use auto or eager") from err
            log.info("predict: eager PyTorch (this model does not export to ONNX: %s)", why)
            return self.chosen
        int8 = self.int8_session(path, self.runtime == "int8") if self.runtime in ("auto", "int8") else None
        net = plain(pl_module).eval()
        if self.runtime == "auto":
            x = example(self.batch)
            with torch.no_grad(), forward_context():
                eager = _timed(net, x)
            times = {"onnx": _timed(self._runner(float32), x)}
            if int8 is not None:
                times["int8"] = _timed(self._runner(int8), x)
            best = min(times, key=times.get)
            faster = times[best] < eager
            self._say(path, eager, times, best if faster else "eager")
            if not faster:
                pl_module.train(was_training)
                return self.chosen
        else:
            best = self.runtime
            log.info("predict: ONNX Runtime %s (predict.runtime=%s), %s", "int8" if best == "int8" else "float32",
                     self.runtime, path)
        self.runner = OrtRunner(int8 if best == "int8" else float32, float32 if best == "int8" else None, best)
        self.chosen = best
        return self.chosen

    @staticmethod
    def _runner(session):
        return lambda x: session.run(None, _feed(x))[0]

    def _say(self, path: Path, eager: float, times: dict[str, float], chosen: str) -> None:
        ms = lambda s: f"{1000 * s / self.batch:.2f} ms/face"  # noqa: E731
        said = {"onnx": "ONNX Runtime float32", "int8": "ONNX Runtime int8", "eager": "eager PyTorch"}
        others = ", ".join(f"{said[k]} {ms(v)} ({eager / v:.2f}x)" for k, v in times.items())
        log.info("predict: %s (%s, eager PyTorch %s on this CPU, batch %d; %s)", said[chosen], others, ms(eager),
                 self.batch, path)
        record = path.with_suffix(".speed.json")
        try:
            record.write_text(json.dumps({**{f"{k}_s": v for k, v in times.items()}, "eager_s": eager,
                                          "batch": self.batch, "chosen": chosen}))
        except OSError:
            pass

    def on_predict_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        self.attach(pl_module, getattr(dm, "image_size", None), getattr(dm, "channels", None),
                    trainer.precision_plugin.forward_context)
        self._restore = running(pl_module, self.runner)
        self._restore.__enter__()

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._restore is not None:
            self._restore.__exit__(None, None, None)
            self._restore = None
        self.runner = None
