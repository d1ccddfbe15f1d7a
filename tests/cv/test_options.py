"""``cv``'s options as four typed groups (issue 35): every shipped cv config parses into them, the
entry and the plan stay small, bad values are named in one line, and a config of before the groups
is refused with where each option went."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

from lightning_fer.cv import Collect, Experts, Folds, Lineup, arguments, make_plan, run_cv
from lightning_fer.cv.plan import Plan
from lightning_fer.options import OptionError

REPO = Path(__file__).resolve().parents[2]
CV_CONFIGS = sorted(p for p in (REPO / "configs").glob("*/cv*.yaml"))


@pytest.mark.parametrize("config", CV_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_cv_config_parses_into_the_groups(config, tmp_path):
    args = arguments(["--config", str(config), f"--output_dir={tmp_path}"])
    assert isinstance(args["lineup"], Lineup) and isinstance(args["folds"], Folds)
    assert isinstance(args["collect"], Collect) and isinstance(args["experts"], Experts)
    plan = make_plan(**args)
    assert plan.runs and [s.name for s in plan.members][: len(args["lineup"].members)] == \
        [Path(m).stem for m in args["lineup"].members]


def test_the_entry_and_the_plan_are_small():
    assert len(inspect.signature(run_cv).parameters) <= 8
    assert len(fields(Plan)) <= 8


def test_command_line_options_reach_their_group(tmp_path):
    args = arguments(["--config", str(REPO / "configs/demo/cv_quick.yaml"), "--folds.seeds=[0,1]",
                      "--collect.flip=true", "--experts.regions=[mouth]", "--collect.views=[face,mouth]"])
    plan = make_plan(**{**args, "output_dir": str(tmp_path)})
    assert plan.runs == [(0, 0), (0, 1)] and plan.collect.flip and plan.all_views == ["face", "mouth", "face_flip"]
    assert [s.name for s in plan.members if s.expert] == ["inception_v3@mouth", "resnet50@mouth", "sppnet@mouth"]


@pytest.mark.parametrize(("argv", "said"), [
    (["--folds.num_folds=1"], "--folds.num_folds 1: at least 2"),
    (["--folds.folds=[7]"], r"--folds.folds \[7\]: each fold must be in 0..4"),
    (["--members=[a.yaml]"], "cv --members: now --lineup.members"),
    (["--flip=true"], "cv --flip: now --collect.flip"),
])
def test_bad_options_are_named(argv, said):
    with pytest.raises(OptionError, match=said):
        arguments(["--config", str(REPO / "configs/demo/cv_quick.yaml"), *argv])


def test_a_flat_config_of_before_the_groups_says_where_each_option_went(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("members: [configs/demo/sppnet.yaml]\nfolds: [0]\nnum_folds: 3\nflip: true\nexpert_regions: [mouth]\n")
    with pytest.raises(OptionError, match=r"old.yaml: members is now lineup.members, folds is now folds.folds, "
                                          r"num_folds is now folds.num_folds, flip is now collect.flip, "
                                          r"expert_regions is now experts.regions"):
        arguments(["--config", str(old)])


def test_a_lineup_needs_members():
    with pytest.raises(OptionError, match="--lineup.members: list at least one member config"):
        Lineup([])


def test_overrides_as_mappings_reach_each_member_s_config(tmp_path):
    """Issue 35: member overrides are YAML mappings (command-line strings still work, in order)."""
    from lightning_fer.build import build
    from lightning_fer.cv.options import as_layers
    from lightning_fer.cv.train import own_overrides

    args = arguments(["--config", str(REPO / "configs/fer2013/cv.yaml"), f"--output_dir={tmp_path}",
                      "--lineup.overrides={trainer: {max_epochs: 2, enable_progress_bar: false}}"])
    plan = make_plan(**args)
    assert plan.lineup.member_overrides["inception_v3_small"] == {"data": {"init_args": {"training": {"fraction": 0.5}}},
                                                                  "model": {"init_args": {"optim": {"lr": 0.02}}}}
    spec = next(s for s in plan.members if s.name == "inception_v3_small")
    built = build(spec.config, {"trainer": {"logger": False}}, *as_layers(plan.lineup.overrides), *own_overrides(spec, plan))
    assert built.trainer.max_epochs == 2 and built.datamodule.training.fraction == 0.5 and built.model.optim.lr == 0.02
    mixed = as_layers(["--trainer.max_epochs=3", {"trainer": {"max_epochs": 4}}])
    assert build(spec.config, {"trainer": {"logger": False}}, *mixed).trainer.max_epochs == 4  # in order


def test_no_shipped_cv_config_gives_a_member_its_options_as_strings_but_a_class_path():
    import yaml

    for config in CV_CONFIGS:
        text = yaml.safe_load(config.read_text())
        for group in ("lineup", "experts"):
            for o in [(text.get(group) or {}).get("overrides") or [], *((text.get(group) or {}).get("member_overrides")
                                                                         or {}).values()]:
                strings = [x for x in (o if isinstance(o, list) else []) if isinstance(x, str)]
                assert all("class_path" in x or ".source=" in x or "source.init_args" in x for x in strings), (config, strings)
