"""Writes the small checkpoints in this folder with the library as it was before the 0.2
refactor (commit f338e79), so that tests/models/test_old_checkpoints.py can check they still load.

    cd tests/assets/checkpoints_v0 && python make.py

A SqueezeNet 1.1 member (2.9 MB, 64 px faces) trained for 4 steps on synthetic faces through
the CLI, and an ensemble of it on the face and the mouth with a fitted Stacking strategy, saved
weights-only; ``expected.pt`` holds a fixed input (torch.randn after manual_seed(0)) and what both models answered on it then.
"""

import json
import shutil
import tempfile
from pathlib import Path

import torch

from lightning_fer.cli import main

HERE = Path(__file__).resolve().parent
COMMON = [
    "--data.init_args.source=lightning_fer.data.SyntheticSource",
    "--data.init_args.source.init_args.num_subjects=17",
    "--data.init_args.source.init_args.images_per_class=1",
    "--data.init_args.source.init_args.test_subjects=2",
    "--data.init_args.source.init_args.image_size=80",
    "--data.init_args.loader.num_workers=0",
    "--data.init_args.loader.batch_size=4",
    "--data.init_args.image_size=64",
    "--trainer.accelerator=cpu",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger=false",
]

if __name__ == "__main__":
    work = Path(tempfile.mkdtemp())
    common = [*COMMON, f"--data.init_args.source.init_args.root={work / 'synthetic'}"]
    cli = main(["fit", "--config", "../../../configs/demo/resnet50.yaml", *common, "--model.init_args.backbone=squeezenet1_1",
                "--trainer.max_epochs=1", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1",
                "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--test_after_fit=false",
                f"--trainer.default_root_dir={work}"])
    cli.trainer.save_checkpoint(HERE / "member.ckpt", weights_only=True)
    ens = main(["test", "--config", "../../../configs/demo/ensemble_stacking.yaml", *common,
                "--model.init_args.members=" + json.dumps([str(HERE / "member.ckpt")]),
                "--model.init_args.views=[face, mouth]", "--data.init_args.views=[face, mouth]",
                "--trainer.callbacks=[]", f"--trainer.default_root_dir={work}"])
    ens.trainer.save_checkpoint(HERE / "ensemble.ckpt", weights_only=True)
    torch.manual_seed(0)
    views = torch.randn(3, 2, 3, 64, 64)
    member, ensemble = cli.model.eval(), ens.model.eval()
    with torch.no_grad():
        expected = {"seed": 0, "shape": list(views.shape), "member_logits": member(views[:, 0]), "ensemble_scores": ensemble(views),
                    "class_names": list(member.class_names), "strategy": type(ensemble.strategy).__name__}
    torch.save(expected, HERE / "expected.pt")
    shutil.rmtree(work)
