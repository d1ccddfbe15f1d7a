"""Scoring a ``cv`` run: every member and every strategy on every group, on the test split of every
run, into Table II's rows (figures per run, and what each row is)."""

from __future__ import annotations

import torch

from lightning_fer.cv.ensembles import groups, voters
from lightning_fer.cv.plan import FLIP_VIEW, Plan
from lightning_fer.cv.predictions import RunPredictions
from lightning_fer.cv.report import ROW_FIELDS, scores, selective
from lightning_fer.ensemble.functional import agreement
from lightning_fer.models.evaluation import flip_average

__all__ = ["ROW_FIELDS", "evaluate"]


def evaluate(plan: Plan, collected: dict[str, RunPredictions], fitted: dict, row_names: list[str], num_classes: int,
             keep: dict | None = None):
    """Table II figures per run for every member (on its own region; whole-face members also
    with the mirrored face when ``flip``) and every strategy on every group, the confusion
    matrices summed over runs, and what each row is (:data:`ROW_FIELDS`, by row name), so that
    readers select rows by columns, never by parsing names (a user's strategy named like a
    member stays a strategy). ``keep``, where given, receives every row's test probabilities per run
    (``keep[row][run name]``), for paired comparisons on the same faces."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    rows: dict[str, list[dict]] = {}
    confusion: dict[str, torch.Tensor] = {}
    what: dict[str, dict] = {}

    def record(name: str, probs: torch.Tensor, labels: torch.Tensor, fields: dict, k: int, sd: int | None,
               agree: torch.Tensor | None = None) -> None:
        figures = {**scores(probs, labels, num_classes), **selective(probs, labels, agree)}
        if keep is not None:
            keep.setdefault(name, {})[plan.run_name(k, sd)] = probs.detach().float().cpu()
        rows.setdefault(name, []).append({**figures, "fold": k, "seed": sd})
        what[name] = {f: fields.get(f, "") for f in ROW_FIELDS}
        cm = multiclass_confusion_matrix(probs, labels, num_classes)
        confusion[name] = confusion.get(name, torch.zeros_like(cm)) + cm

    for k, sd in plan.runs:
        d = collected[plan.run_name(k, sd)]
        logits, labels, views = d.test.logits, d.test.labels, d.views
        for i, name in enumerate(d.names):
            region, kind = d.regions[i], d.kinds[i]
            kind, owner = (("snapshot", kind.split(":", 1)[1]) if kind.startswith("snapshot:")
                           else ("member" if kind == "face" else kind, name))
            fields = {"kind": kind, "member": owner, "region": region, "flip": False, "voters": name}
            record(name, logits[:, i, views.index(region)].softmax(-1), labels, fields, k, sd)
            if plan.collect.flip and region == "face":
                record(f"{name} + flip", flip_average(logits[:, i, views.index("face")],
                                                     logits[:, i, views.index(FLIP_VIEW)]).softmax(-1),
                       labels, {**fields, "flip": True}, k, sd)
        with torch.no_grad():
            for group in groups(plan, d):
                z, mask = voters(d, "test", group)
                real = (mask if mask.dim() == 3 else mask.expand(len(z), -1, -1)).flatten(1)
                uses_flip = FLIP_VIEW in views and bool(group.mask[:, views.index(FLIP_VIEW)].any())
                who = ";".join(d.names[i] for i in group.members)
                for s, row in zip(fitted[sd, group.label], row_names):
                    out = s(z, mask)
                    fields = {"kind": "strategy", "strategy": row, "group": group.label or "all views",
                              "region": "", "flip": uses_flip, "voters": who}
                    name = row + group.suffix()
                    if what.get(name, {}).get("kind", "strategy") != "strategy":
                        name += " (strategy)"  # a strategy named like a member stays a strategy
                    record(name, out, labels, fields, k, sd, agreement(z.flatten(1, 2), out, real))
    return rows, confusion, what
