#!/usr/bin/env bash
# The face view of pre-cropped faces (issue 16): the same ResNet18 (seed 0, 5 epochs, fold 0 of 5, full training folds) with the face
# view from MTCNN's box (face_box: auto) and from the whole 48 px crop (face_box: image).
cd "$(dirname "$0")/.."
# Results: benchmarks/results/face_box_fer2013.md (about 20 min per run on 2 idle CPU cores).
export NO_ALBUMENTATIONS_UPDATE=1
for fb in image auto; do
  out=runs/face_box_fer2013/$fb
  [ -f $out/done ] && continue
  mkdir -p $out
  cat > $out/override.yaml <<YAML
trainer:
  enable_progress_bar: false
  default_root_dir: $out
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {save_dir: $out, name: logs}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {dirpath: $out/checkpoints, filename: best, monitor: val/acc, mode: max, enable_version_counter: false}
data:
  init_args:
    face_box: $fb
YAML
  python -m lightning_fer fit --config configs/fer2013/resnet18.yaml --config $out/override.yaml \
     > runs/face_box_fer2013/$fb.log 2>&1 && touch $out/done
done
