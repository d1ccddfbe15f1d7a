"""``EnsembleNet``: member networks on every view, combined by a strategy, as a plain ``nn.Module``
(what ``export`` writes and what :class:`~lightning_fer.ensemble.EnsembleModule` wraps)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_fer.data.regions import FLIP_VIEW, check_views
from lightning_fer.data.transforms import normalize_batch
from lightning_fer.ensemble.functional import exporting, missing_views
from lightning_fer.ensemble.members import MemberNet
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote


class EnsembleNet(nn.Module):
    """Every member on every view it is bound to, combined by a strategy.

    A member trained on one region (a region expert) sees only that region; a member trained on
    ``face`` sees every view. Each member runs once per batch on all its views together. Views
    not located on a face (``view_mask``) get no vote for that sample; a sample left with no vote
    falls back to its whole face, judged by the face-trained members
    (:func:`~lightning_fer.ensemble.functional.missing_views`).

    Args:
        members: the member networks.
        strategy: how to combine (default :class:`HardVote`).
        views: the regions the input carries, in order.
        image_size: side of the views the ensemble receives (default: the largest member's).
        member_batch: split each member's ``B x views`` images into calls of at most this many.
        flip: horizontal-flip test-time augmentation: the mirrored face (``face`` must be among
            the views) is one more view, ``face_flip``, that every whole-face member votes on and
            every strategy counts (:attr:`voter_views`).

    Example:
        >>> from lightning_fer import FERClassifier
        >>> members = [MemberNet.from_classifier(FERClassifier(b, image_size=64)) for b in ("resnet18", "sppnet")]
        >>> net = EnsembleNet(members, views=["face", "mouth"])
        >>> net.image_size, net(torch.randn(2, 2, 3, 64, 64)).shape
        (64, torch.Size([2, 7]))
    """

    def __init__(
        self,
        members: Sequence[MemberNet],
        strategy: EnsembleStrategy | None = None,
        views: Sequence[str] = ("face",),
        image_size: int | None = None,
        member_batch: int | None = None,
        flip: bool = False,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if member_batch is not None and member_batch < 1:
            raise ValueError(f"member_batch must be a positive number of images or None, got {member_batch}")
        self.views = check_views(views)
        if flip and "face" not in self.views:
            raise ValueError(f"flip (test-time augmentation) mirrors the face, which is not among views {self.views}")
        self.flip = bool(flip)
        #: What the strategy sees: the views, and the mirrored face with ``flip``.
        self.voter_views = [*self.views, FLIP_VIEW] if self.flip else list(self.views)
        self.member_batch = member_batch
        self.members = nn.ModuleList(members)
        self.members.eval().requires_grad_(False)
        names = [m.class_names for m in members]
        if any(n != names[0] for n in names):
            listing = "\n  ".join(f"{m.name}: {n}" for m, n in zip(members, names))
            raise ValueError(f"ensemble members disagree on class names:\n  {listing}")
        self.class_names = list(names[0])
        self.image_size = int(image_size or max(m.image_size for m in members))
        mask = torch.ones(len(members), len(self.voter_views), dtype=torch.bool)  # which views each member sees
        for i, m in enumerate(members):
            if m.region != "face":
                if m.region not in self.views:
                    raise ValueError(f"member {m.name} is an expert on {m.region!r}, which is not among views {self.views}")
                mask[i] = torch.tensor([v == m.region for v in self.voter_views])
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("face_members", torch.tensor([m.region == "face" for m in members]), persistent=False)
        self._seen = [[j for j in range(len(self.voter_views)) if mask[i, j]] for i in range(len(members))]
        self.strategy = strategy if strategy is not None else HardVote()
        self.strategy.setup(len(members), len(self.voter_views), len(self.class_names))

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def set_strategy(self, strategy: EnsembleStrategy) -> None:
        """Swap the strategy (set up for this ensemble's members, views and classes)."""
        strategy.setup(len(self.members), len(self.voter_views), len(self.class_names))
        self.strategy = strategy.to(self.mask.device)

    def train(self, mode: bool = True):
        super().train(mode)
        self.members.eval()  # frozen: batch norm and dropout stay in inference mode
        return self

    def _run(self, member: MemberNet, x: torch.Tensor) -> torch.Tensor:
        if self.member_batch and len(x) > self.member_batch and not exporting():
            return torch.cat([member(c) for c in x.split(self.member_batch)])
        return member(x)

    def member_logits(self, views: torch.Tensor) -> torch.Tensor:
        """``views`` ``[B, V, 3, S, S]`` -> logits ``[B, M, V', C]`` over :attr:`voter_views`
        (masked pairs are zeros)."""
        if views.shape[1] != len(self.views):
            raise ValueError(f"batch has {views.shape[1]} views, the ensemble expects {len(self.views)} ({self.views})")
        views = self._with_flip(views)
        v = views.shape[1]
        per_member = []
        for member, seen in zip(self.members, self._seen):
            # Static indexing and plain ints only, so that traced and exported graphs keep their
            # shapes (ONNX's adaptive pooling needs them).
            x = views if len(seen) == v else torch.cat([views[:, j : j + 1] for j in seen], 1)
            x = x.reshape(-1, *(int(d) for d in views.shape[2:]))
            logits = self._run(member, x).reshape(-1, len(seen), len(self.class_names))
            cols = [logits[:, seen.index(j)] if j in seen else torch.zeros_like(logits[:, 0]) for j in range(v)]
            per_member.append(torch.stack(cols, 1))
        return torch.stack(per_member, 1)

    def _with_flip(self, views: torch.Tensor) -> torch.Tensor:
        if not self.flip:
            return views
        j = self.views.index("face")
        return torch.cat([views, views[:, j : j + 1].flip(-1)], 1)

    def _with_flip_mask(self, view_mask: torch.Tensor) -> torch.Tensor:
        if not self.flip:
            return view_mask
        j = self.views.index("face")
        return torch.cat([view_mask, view_mask[:, j : j + 1]], 1)

    def voters(
        self, views: torch.Tensor, view_mask: torch.Tensor | None = None, face: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member logits ``[B, M, V, C]`` and the mask of real member-views: ``[M, V]`` without a
        ``view_mask``, else ``[B, M, V]``, with the face fallback applied where a sample has no
        real view (``face`` ``[B, 3, S, S]``: the whole faces; where the face is among the views
        it is taken from there)."""
        logits = self.member_logits(views)
        if view_mask is None or exporting():
            return logits, self.mask
        view_mask = self._with_flip_mask(view_mask.bool())
        face_logits = None
        if "face" not in self.views and face is not None and bool(self.face_members.any()):
            real = self.mask[None] & view_mask.to(logits.device)[:, None, :]
            none = ~real.flatten(1).any(1)
            if bool(none.any()):  # the face fallback needs the members' answers on the whole face
                face_logits = torch.zeros_like(logits[:, :, 0])
                rows = none.nonzero().squeeze(1)
                for i, member in enumerate(self.members):
                    if self.face_members[i]:
                        face_logits[rows, i] = self._run(member, face[rows].to(logits.device))
        return self.cached_voters(logits, self.mask, view_mask, self.face_members, self.voter_views, face_logits)

    @staticmethod
    def cached_voters(
        logits: torch.Tensor, mask: torch.Tensor, view_mask: torch.Tensor, face_members: torch.Tensor,
        views: list[str], face_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What a strategy sees of members' logits ``[N, M, V, C]`` (live, or cached by ``cv``):
        the logits and the per-sample mask of real member-views. The one masking rule of every
        ensemble: a member votes on the views ``mask`` ``[M, V]`` binds it to, where the view
        was located on that face (``view_mask`` ``[N, V]``); a sample left with no real view is
        judged on the whole face by the members trained on faces (``face_members`` ``[M]``),
        from the ``face`` column of ``views`` or from ``face_logits`` ``[N, M, C]``
        (:func:`~lightning_fer.ensemble.functional.missing_views`)."""
        if face_logits is None and "face" in views:
            face_logits = logits[:, :, views.index("face")]
        return missing_views(logits, mask, view_mask.bool().to(logits.device), face_logits, face_members)

    def forward(
        self, views: torch.Tensor, view_mask: torch.Tensor | None = None, face: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class scores ``[B, C]`` for ``views`` ``[B, V, 3, S, S]``; ``view_mask`` ``[B, V]``
        and ``face`` ``[B, 3, S, S]`` as in :meth:`voters` (an exported graph takes views only)."""
        return self.strategy(*self.voters(views, view_mask, face))

    @torch.no_grad()
    def collect(self, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Over a loader: member logits ``[N, M, V', C]``, labels ``[N]``, indices ``[N]`` and
        the views located on each face ``[N, V']`` (all ``True`` where the batches carry none),
        over :attr:`voter_views`.

        The logits are the members' raw answers on every view; :meth:`voters` (or
        :func:`~lightning_fer.ensemble.functional.missing_views`) turns them and the view mask
        into what the strategy sees.
        """
        device = self.mask.device
        logits, labels, index, located = [], [], [], []
        for batch in loader:
            views = normalize_batch({"views": batch["views"].to(device)})["views"]
            logits.append(self.member_logits(views).cpu())
            labels.append(batch["label"])
            index.append(batch["index"])
            vm = batch.get("view_mask")
            vm = torch.ones(views.shape[:2], dtype=torch.bool) if vm is None else vm.bool().cpu()
            located.append(self._with_flip_mask(vm))
        return torch.cat(logits), torch.cat(labels), torch.cat(index), torch.cat(located)

    @torch.no_grad()
    def fit_strategy(self, loader) -> int:
        """Fit the strategy on every batch of ``loader`` (held-out data; images of classes the
        members do not know, label -1, are left out); returns the number of samples seen."""
        logits, labels, mask = [], [], []
        for batch in loader:
            batch = normalize_batch({**batch, "views": batch["views"].to(self.mask.device)})
            z, m = self.voters(batch["views"], batch.get("view_mask"), batch.get("image"))
            logits.append(z.cpu())
            mask.append(self.strategy.sample_mask(m, *z.shape[:3], "cpu"))
            labels.append(batch["label"])
        y = torch.cat(labels)
        self.fit_cached(self.strategy, torch.cat(logits), y, torch.cat(mask))
        return len(y)

    @staticmethod
    def fit_cached(strategy: EnsembleStrategy, logits: torch.Tensor, labels: torch.Tensor,
                   mask: torch.Tensor | None = None) -> int:
        """The one way a strategy learns, from logits ``[N, M, V, C]`` live or cached by ``cv``
        (what :meth:`voters` or :meth:`cached_voters` give, with their mask): images of classes the
        members do not know (label -1) are left out. Returns the number of images it learnt from."""
        known = labels >= 0
        if mask is not None and mask.dim() == 3:
            mask = mask[known]
        if strategy.requires_fit:
            strategy.fit(logits[known], labels[known], mask)
        return int(known.sum())
