"""Saved data module options of earlier versions, in the current layout: what the shipped models'
bundles, checkpoints' ``datamodule_hyper_parameters`` and :class:`lightning_fer.Predictor` are read
through. 0.4 grouped 0.3's flat ``fold`` ... ``wire`` into ``folds``, ``records`` and ``loader``;
0.3 had grouped 0.2's flat landmark, training and predict options."""

from __future__ import annotations

#: flat options of 0.1-0.3 -> (the group that holds them now, their name there)
MOVED = {
    **{k: ("folds", k) for k in ("fold", "num_folds", "seed", "eval_split")},
    **{k: ("records", k) for k in ("split_map", "duplicates", "skip_bad_images", "cache_dir")},
    **{k: ("loader", k) for k in ("batch_size", "num_workers", "wire")},
    "no_face": ("landmarks", "no_face"), "min_view_inside": ("landmarks", "min_inside"),
    "detect_batch_size": ("landmarks", "batch_size"), "detect_device": ("landmarks", "device"),
    "balanced_sampler": ("training", "balanced_sampler"), "augment": ("training", "augment"),
    "augmentation": ("training", "augmentation"), "train_fraction": ("training", "fraction"),
    "predict_path": ("predict", "path"), "predict_output": ("predict", "output"),
    "annotate_dir": ("predict", "annotate_dir"), "min_face_prob": ("predict", "min_face_prob"),
}
#: options that no longer exist and are dropped (the folds file lives in the cache folder)
DROPPED = ("folds_file",)
#: FERDataModule's options now
CURRENT = ("source", "root", "views", "image_size", "channels", "face_box", "landmarks", "folds", "records", "loader",
           "training", "predict")


def current_data_options(saved: dict) -> tuple[dict, list[str]]:
    """A FERDataModule's saved options in the current layout, and the old names that were moved
    or dropped (empty: already current). Names starting with ``_`` (Lightning's) are kept as they
    are. A ``predict`` group whose ``path`` is empty is ``None`` (the test split), as before.

    Example:
        >>> opts, moved = current_data_options({"root": "fer2013", "split_map": {"val": "test"}, "fold": None,
        ...                                     "num_workers": 2, "loader": {"batch_size": 8}})
        >>> opts["records"], opts["folds"], opts["loader"], moved
        ({'split_map': {'val': 'test'}}, {'fold': None}, {'num_workers': 2, 'batch_size': 8}, ['fold', 'num_workers', 'split_map'])
        >>> current_data_options({"landmarks": "auto", "no_face": "skip", "predict_path": None})[0]
        {'landmarks': {'no_face': 'skip', 'mode': 'auto'}, 'predict': None}

    Raises:
        TypeError: a name no version of FERDataModule took (named).
    """
    old = sorted(k for k in saved if not k.startswith("_") and k not in CURRENT)
    unknown = sorted(set(old) - set(MOVED) - set(DROPPED))
    if unknown:
        raise TypeError(f"FERDataModule options {unknown} are unknown; its options are {list(CURRENT)} (0.3's flat "
                        "fold, num_folds, seed, eval_split moved into folds; split_map, duplicates, skip_bad_images, "
                        "cache_dir into records; batch_size, num_workers, wire into loader: see CHANGELOG.md)")
    if not old:
        return saved, []
    opts = {k: v for k, v in saved.items() if k not in old}
    groups: dict[str, dict] = {}
    for name in old:
        if name in MOVED:
            group, key = MOVED[name]
            groups.setdefault(group, {})[key] = saved[name]
    for group, values in groups.items():
        now = opts.get(group)
        if isinstance(now, str):  # a landmark mode given by name
            now = {"mode": now}
        opts[group] = {**values, **dict(now or {})}
    if "predict" in groups and not opts["predict"].get("path"):
        opts["predict"] = None
    return opts, old
