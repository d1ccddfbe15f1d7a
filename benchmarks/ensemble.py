"""Ensemble inference cost: an EnsembleModule of 3 backbones on 5 views against the sum of its
members' own forward times on the same inputs, against a naive loop member by member and view by
view, and against torchensemble's ``VotingClassifier`` (where it is installed) given the same
members; then the FLOPs the ensemble does per second against this machine's matrix-multiply peak.

    python -m benchmarks.ensemble [--batch 16] [--size 64] [--repeats 3]

Members are untrained Inception V3, ResNet50 and SPP-net at the same input size (weights do not
change the cost). Times are medians of ``--repeats`` runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import machine, median_time, table
from lightning_fer import EnsembleModule, FERClassifier
from lightning_fer.ensemble import HardVote, SoftVote

PARTS = ["left_eye", "right_eye", "nose", "mouth", "rest"]


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Achieved float32 GFLOP/s of an n x n matrix multiply: this machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def flops(fn) -> int:
    """Floating-point operations of one call, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def torchensemble_voting(members: list, soft: bool):
    """torchensemble's VotingClassifier holding our members (it is built for copies of one
    estimator class; its forward only loops over ``estimators_``), or None when not installed."""
    try:
        from torchensemble import VotingClassifier
    except ImportError:
        return None
    te = VotingClassifier(estimator=members[0], n_estimators=len(members), cuda=False,
                          voting_strategy="soft" if soft else "hard")
    te.estimators_ = torch.nn.ModuleList(members)
    return te.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    members = [FERClassifier(b, image_size=args.size, class_names=None) for b in ("inception_v3", "resnet50", "sppnet")]
    ens = EnsembleModule(members, HardVote(), views=PARTS).eval()
    views = torch.randn(args.batch, len(PARTS), 3, args.size, args.size)
    flat = views.reshape(-1, 3, args.size, args.size)
    rows = []
    with torch.inference_mode():
        t_members = [median_time(lambda m=m: m(flat), args.repeats) for m in members]
        t_sum = sum(t_members)
        t_ens = median_time(lambda: ens(views), args.repeats)

        def naive():
            out = []
            for m in members:
                for v in range(len(PARTS)):
                    out.append(m(views[:, v]))
            return torch.stack(out)

        t_naive = median_time(naive, args.repeats)
        chunked = EnsembleModule(members, HardVote(), views=PARTS, member_batch=args.batch).eval()
        t_chunk = median_time(lambda: chunked(views), args.repeats)
        soft = EnsembleModule(members, SoftVote(), views=PARTS).eval()
        t_soft = median_time(lambda: soft(views), args.repeats)
        te = torchensemble_voting(members, soft=True)
        t_te = median_time(lambda: [te(views[:, v]) for v in range(len(PARTS))], args.repeats) if te else None
        work = flops(lambda: ens(views))
    peak = matmul_peak()
    n = args.batch
    for m, t in zip(("inception_v3", "resnet50", "sppnet"), t_members):
        rows.append([f"member {m} alone, {n}x5 views in one batch", t * 1000, n / t, "-"])
    rows.append(["sum of the members (baseline)", t_sum * 1000, n / t_sum, "1.00"])
    rows.append(["EnsembleModule (3 members x 5 views, HardVote)", t_ens * 1000, n / t_ens, f"{t_ens / t_sum:.3f}"])
    rows.append(["naive loop: member by member, view by view", t_naive * 1000, n / t_naive, f"{t_naive / t_sum:.3f}"])
    rows.append([f"EnsembleModule, HardVote, member_batch={n} (calls of {n} images)", t_chunk * 1000, n / t_chunk,
                 f"{t_chunk / t_sum:.3f}"])
    rows.append(["EnsembleModule, SoftVote", t_soft * 1000, n / t_soft, f"{t_soft / t_sum:.3f}"])
    if t_te is not None:
        rows.append(["torchensemble VotingClassifier (soft), one call per view", t_te * 1000, n / t_te,
                     f"{t_te / t_sum:.3f}"])
    else:
        rows.append(["torchensemble VotingClassifier: not installed (pip install torchensemble)", "-", "-", "-"])
    print(f"Machine: {machine()}\nbatch {n} faces x 5 regions at {args.size} px, float32, median of {args.repeats}\n")
    print(table(["what", "ms per batch", "faces/s", "time / sum of members"], rows))
    achieved = work / t_ens / 1e9
    print(f"\nEnsemble work: {work / 1e9:.2f} GFLOP per batch -> {achieved:.1f} GFLOP/s achieved; float32 "
          f"matrix multiply (1024x1024) on this machine: {peak:.1f} GFLOP/s; ratio {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
