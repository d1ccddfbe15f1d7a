"""The command line: ``python -m lightning_fer {fit,validate,test,predict} --config FILE``.

A LightningCLI in subclass mode for model and data, with omegaconf interpolation resolved after
command-line overrides (``omegaconf+``). The class lives here, not in ``__main__``, because
``ddp_spawn`` pickles it.
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m lightning_fer [-h] {fit,validate,test,predict,cv,export} --config FILE [--section.key=value ...]

Facial expression recognition with PyTorch Lightning and pluggable ensembles.

subcommands:
  fit        train a model (a FERClassifier on one backbone, or an ensemble)
  validate   evaluate a checkpoint on the validation split
  test       evaluate a checkpoint on the test split
  predict    class probabilities for the test split, or for every face in photos (--data.predict_path)
  cv         cross-validated training of several members, out-of-fold stacking, Table II
  export     a member or an ensemble to TorchScript or ONNX, checked against eager outputs

examples:
  python -m lightning_fer fit --config configs/demo/resnet50.yaml
  python -m lightning_fer fit --config configs/demo/resnet50.yaml --model.lr=0.01 --trainer.max_epochs=3
  python -m lightning_fer test --config configs/demo/resnet50.yaml --ckpt_path runs/demo/resnet50/checkpoints/best.ckpt
  python -m lightning_fer fit --config configs/demo/resnet50.yaml --print_config
  python -m lightning_fer cv --config configs/demo/cv.yaml
  python -m lightning_fer test --config configs/demo/ensemble_hard.yaml

'python -m lightning_fer SUBCOMMAND --help' lists every option.
"""


def _cli_class():
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from lightning_fer.data.datamodule import FERDataModule

    class FERCLI(LightningCLI):
        """LightningCLI with the data -> model links and a test run after ``fit``."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--test_after_fit", type=bool, default=False,
                help="after fit, test the best checkpoint and print the figures",
            )
            parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")
            parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
            parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")

        def before_predict(self) -> None:
            from lightning_fer.predict import FacePredictionWriter

            out = getattr(self.datamodule, "predict_output", None)
            if out and not any(isinstance(c, FacePredictionWriter) for c in self.trainer.callbacks):
                self.trainer.callbacks.append(FacePredictionWriter(out, getattr(self.datamodule, "annotate_dir", None)))

        def after_fit(self) -> None:
            if self.config[self.subcommand].get("test_after_fit"):
                ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)

    return FERCLI, L.LightningModule, FERDataModule


def main(args: list[str] | None = None, run: bool = True):
    """Run the CLI; ``args`` as on the command line (``None``: ``sys.argv[1:]``).

    With ``run=False`` the configured objects are built and returned, not run (a leading
    subcommand in ``args`` is dropped).
    """
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)  # answered without importing torch or lightning
        return None
    _setup_logging()
    if argv[0] == "cv":
        from lightning_fer.cv import main as cv_main

        return cv_main(argv[1:])
    if argv[0] == "export":
        from lightning_fer.export import main as export_main

        return export_main(argv[1:])
    if not run and argv[0] in ("fit", "validate", "test", "predict"):
        argv = argv[1:]
    import warnings

    from lightning_fer.ensemble.module import MemberNotFoundError

    FERCLI, base_model, base_data = _cli_class()
    with warnings.catch_warnings():
        # cv and export run the CLI from Python on purpose: LightningCLI's advice against that
        # is about user scripts, and would be printed on every call the library makes.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        try:
            return FERCLI(
                base_model,
                base_data,
                subclass_mode_model=True,
                subclass_mode_data=True,
                parser_kwargs={"parser_mode": "omegaconf+"},
                save_config_kwargs={"overwrite": True},
                args=args if run else argv,
                run=run,
            )
        except Exception as err:  # jsonargparse wraps errors raised while it builds the objects
            missing = _cause(err, MemberNotFoundError)
            if missing is None or args is not None:  # called from Python: the caller handles it
                raise
            print(f"error: {missing}", file=sys.stderr)
            raise SystemExit(2) from None


def _cause(err: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``err``'s chain of causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _setup_logging() -> None:
    import logging
    import os

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import warnings

    # Lightning 2.6 on torch >= 2.10 warns about its own use of torch's pytree API, once per
    # data loader; nothing a user of this CLI can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Our reports (images checked, landmark kinds, splits, skipped files) at INFO, as Lightning's.
    pkg_log = logging.getLogger("lightning_fer")
    if not pkg_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[lightning_fer] %(message)s"))
        pkg_log.addHandler(handler)
        pkg_log.setLevel(logging.INFO)
