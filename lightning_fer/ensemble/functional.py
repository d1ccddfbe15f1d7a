"""Pure voting arithmetic, as scikit-learn's ``VotingClassifier`` does it.

Predictions come as logits ``[..., E, C]``: E voters (member-view pairs), C classes. Weights
``[E]`` scale each voter; a zero weight removes it.
"""

from __future__ import annotations

from typing import Literal

import torch

TieBreak = Literal["probability", "lowest"]


def exporting() -> bool:
    """Inside tracing, compiling or exporting, where data-dependent checks cannot run."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _weights(weights: torch.Tensor | None, e: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.ones(e, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (e,):
        raise ValueError(f"weights must have shape ({e},) for {e} voters, got {tuple(w.shape)}")
    if not exporting() and (w < 0).any():  # a data-dependent check: not in exported graphs
        raise ValueError("weights must be non-negative")
    return w


def hard_vote(logits: torch.Tensor, weights: torch.Tensor | None = None, tie_break: TieBreak = "probability") -> torch.Tensor:
    """Weighted majority vote of the voters' predicted classes.

    Args:
        logits: ``[..., E, C]``.
        weights: ``[E]`` vote weights (default 1 each).
        tie_break: ``probability``: among the classes tied for most votes, the one with the
            highest weighted sum of probabilities wins; ``lowest``: the lowest class index wins
            (scikit-learn's ``VotingClassifier(voting="hard")``, ``np.argmax(np.bincount(...))``).

    Returns:
        ``[..., C]`` vote shares (summing to 1) whose argmax is the decision (a tie is broken by
        adding 1e-6 to the winner).

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]])  # 3 voters, 2 classes
        >>> hard_vote(logits)
        tensor([[0.6667, 0.3333]])
    """
    e, c = logits.shape[-2:]
    w = _weights(weights, e, logits.float())
    votes = torch.nn.functional.one_hot(logits.argmax(-1), c).to(w.dtype)  # [..., E, C]
    tally = (votes * w[:, None]).sum(-2)  # [..., C]
    total = w.sum().clamp(min=torch.finfo(w.dtype).tiny)
    shares = tally / total
    top = tally.max(-1, keepdim=True).values
    tied = (top - tally) <= 1e-6 * total
    if tie_break == "lowest":
        winner = tied.float().argmax(-1)  # first True
    elif tie_break == "probability":
        prob = (logits.float().softmax(-1) * w[:, None]).sum(-2)
        winner = torch.where(tied, prob, torch.full_like(prob, -1.0)).argmax(-1)
    else:
        raise ValueError(f"tie_break must be 'probability' or 'lowest', got {tie_break!r}")
    bump = torch.nn.functional.one_hot(winner, c).to(shares.dtype) * 1e-6
    return shares + bump


def soft_vote(
    logits: torch.Tensor, weights: torch.Tensor | None = None, temperature: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Weighted mean of the voters' probabilities (``VotingClassifier(voting="soft")``).

    Args:
        logits: ``[..., E, C]``.
        weights: ``[E]`` weights (default 1 each).
        temperature: a scalar or ``[E]``: logits are divided by it before the softmax.

    Returns:
        ``[..., C]`` probabilities.

    Example:
        >>> soft_vote(torch.zeros(1, 2, 3))
        tensor([[0.3333, 0.3333, 0.3333]])
    """
    e = logits.shape[-2]
    x = logits.float()
    if temperature is not None:
        t = torch.as_tensor(temperature, dtype=x.dtype, device=x.device)
        x = x / (t[:, None] if t.ndim == 1 else t)
    w = _weights(weights, e, x)
    probs = x.softmax(-1)
    return (probs * w[:, None]).sum(-2) / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def missing_views(
    logits: torch.Tensor,
    mask: torch.Tensor,
    view_mask: torch.Tensor | None,
    face_logits: torch.Tensor | None = None,
    face_members: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample voters: the ensemble's ``[M, V]`` mask and the views located on each face.

    Args:
        logits: ``[B, M, V, C]`` member logits.
        mask: ``[M, V]`` which member-views the ensemble uses (an expert sees its region).
        view_mask: ``[B, V]`` which views could be located on each face (``None``: all).
        face_logits: ``[B, M, C]`` the members' logits on the whole face, used where a sample
            has no real member-view left.
        face_members: ``[M]`` which members were trained on whole faces.

    Returns:
        ``(logits, mask)`` with ``mask`` ``[B, M, V]``. A sample with no real member-view falls
        back to the face: its face-trained members vote with their face logits in every view
        they see; without face logits or face-trained members it keeps the ensemble's mask (the
        views as the landmarks guessed them: nothing better is known).

    Example:
        >>> logits = torch.zeros(2, 2, 2, 3)
        >>> static = torch.tensor([[True, True], [False, True]])  # member 1: an expert on view 1
        >>> _, m = missing_views(logits, static, torch.tensor([[True, False], [True, True]]))
        >>> m[0].tolist(), m[1].tolist()
        ([[True, False], [False, False]], [[True, True], [False, True]])
    """
    b, m, v, _ = logits.shape
    static = mask.to(torch.bool).to(logits.device)
    if view_mask is None:
        return logits, static[None].expand(b, m, v)
    real = static[None] & view_mask.to(torch.bool).to(logits.device)[:, None, :]
    none = ~real.flatten(1).any(1)
    if not bool(none.any()):
        return logits, real
    real = real.clone()
    fm = face_members.to(torch.bool).to(logits.device) if face_members is not None else None
    if face_logits is not None and fm is not None and bool(fm.any()):
        logits = logits.clone()
        rows = none.nonzero().squeeze(1)
        sub = logits[rows]
        sub[:, fm] = face_logits[rows][:, fm, None, :].to(sub.dtype).expand(-1, -1, v, -1)
        logits[rows] = sub
        real[rows] = static & fm[:, None]
    else:
        real[none] = static
    return logits, real


def ensemble_selection(probs: torch.Tensor, labels: torch.Tensor, rounds: int,
                       real: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy forward selection with replacement (Caruana et al., 2004) on held-out predictions.

    Starting from the empty ensemble, each round adds the voter whose addition gives the highest
    held-out accuracy of the mean probability of the voters chosen so far (a voter may be chosen
    again: that raises its weight). Ties go to the lower negative log-likelihood, then to the
    lower voter index.

    Args:
        probs: ``[N, E, C]`` held-out probabilities of E voters.
        labels: ``[N]``.
        rounds: how many voters are added (with repetition).
        real: ``[N, E]`` which voters saw each sample (a missing view does not vote on it).

    Returns:
        ``[E]`` how often each voter was chosen (its weight, up to the factor ``rounds``).

    Example:
        >>> p = torch.tensor([[[.9, .1], [.6, .4]], [[.4, .6], [.1, .9]], [[.6, .4], [.3, .7]]])
        >>> ensemble_selection(p, torch.tensor([0, 1, 1]), rounds=2)
        tensor([0., 2.])
    """
    n, e, c = probs.shape
    probs = probs.float()
    w_real = torch.ones(n, e, device=probs.device) if real is None else real.float()
    counts = torch.zeros(e, device=probs.device)
    total = torch.zeros(n, c, device=probs.device)
    weight = torch.zeros(n, device=probs.device)
    hit_index = labels[:, None, None].expand(n, e, 1)
    for _ in range(rounds):
        cand = (total[:, None] + probs * w_real[..., None]) / (weight[:, None] + w_real).clamp(min=1e-12)[..., None]
        acc = (cand.argmax(-1) == labels[:, None]).float().mean(0)  # [E]
        nll = -cand.gather(-1, hit_index).squeeze(-1).clamp(min=1e-12).log().mean(0)  # [E]
        nll = torch.where(acc >= acc.max() - 1e-9, nll, torch.full_like(nll, float("inf")))
        best = int(nll.argmin())  # the first of equal values: the lowest index
        counts[best] += 1
        total += probs[:, best] * w_real[:, best, None]
        weight += w_real[:, best]
    return counts


def selective_accuracy(confidence: torch.Tensor, correct: torch.Tensor, coverage: float) -> float:
    """Accuracy on the ``coverage`` share of samples with the highest ``confidence`` (the rest
    would be flagged for a person): ``ceil(coverage * N)`` samples, ties in confidence broken by
    sample order.

    Example:
        >>> selective_accuracy(torch.tensor([0.9, 0.2, 0.8, 0.4]), torch.tensor([1, 0, 1, 0]), 0.5)
        1.0
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    n = len(confidence)
    k = max(1, int(torch.ceil(torch.tensor(coverage * n - 1e-9)).item()))
    order = torch.sort(confidence.float(), descending=True, stable=True).indices[:k]
    return float(correct.float()[order].mean())


def agreement(logits: torch.Tensor, scores: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """Share of voters whose class is the ensemble's decision, per sample: ``logits`` ``[N, E, C]``,
    ``scores`` ``[N, C]``, ``real`` ``[N, E]`` (missing voters do not count). A confidence for
    :func:`selective_accuracy`.

    Example:
        >>> agreement(torch.tensor([[[2.0, 0], [0, 1.0], [3.0, 0]]]), torch.tensor([[0.7, 0.3]]))
        tensor([0.6667])
    """
    agree = (logits.argmax(-1) == scores.argmax(-1)[:, None]).float()
    w = torch.ones_like(agree) if real is None else real.float()
    return (agree * w).sum(1) / w.sum(1).clamp(min=1)
