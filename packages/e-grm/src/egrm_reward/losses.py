"""The hybrid regression–ranking loss of the path scorer (E-GRM §2.3; the exact form is [INFERRED]).

    L = λ · mean_j (σ(s_j) − q_j)²                                           (regression, "mse")
      + (1 − λ) · mean_{(j,k) same group, q_j > q_k + δ} −log σ(s_j − s_k − m)  (ranking, "pairwise_logistic")

``s`` are raw scores (logits), ``q ∈ [0, 1]`` quality targets, ``λ = lam``, ``m = margin``,
``δ = delta``. Only pairs inside the same group (paths of one prompt) are formed; a batch whose
groups all have equal targets adds only the regression term. Regression keeps σ(s) calibrated on an
absolute scale (the reward value); ranking sharpens the order among one prompt's paths (selection).

Options: ``reg_loss="bce"`` replaces the squared error by BCE-with-logits(s, q);
``rank_loss="margin_hinge"`` uses ``max(0, m − (s_j − s_k))`` per pair, ``rank_loss="listnet"`` the
per-group cross-entropy between ``softmax(q)`` and ``softmax(s)`` (groups with all-equal q skipped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from egrm_reward.errors import EGRMValueError, GroupSizeError, ShapeMismatchError, TargetError

REG_LOSSES = ("mse", "bce")
RANK_LOSSES = ("pairwise_logistic", "margin_hinge", "listnet")


def check_loss_inputs(scores: torch.Tensor, targets: torch.Tensor, group_ids: torch.Tensor) -> None:
    """Validate shapes, finiteness and group sizes (see :class:`HybridRankRegLoss`)."""
    for name, t in (("scores", scores), ("targets", targets), ("group_ids", group_ids)):
        if not isinstance(t, torch.Tensor):
            raise ShapeMismatchError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 1:
            raise ShapeMismatchError(f"{name} must be 1-D [B], got shape {tuple(t.shape)}")
    if not (len(scores) == len(targets) == len(group_ids)):
        raise ShapeMismatchError(
            f"scores, targets and group_ids must have the same length, got "
            f"{len(scores)}, {len(targets)}, {len(group_ids)}"
        )
    if len(scores) == 0:
        raise ShapeMismatchError("empty batch: expected at least one group of >= 2 paths")
    if torch.isnan(targets).any():
        raise TargetError(
            f"targets contain NaN at positions {torch.isnan(targets).nonzero().flatten().tolist()}"
        )
    if torch.isnan(scores).any():
        raise TargetError("scores contain NaN (the scorer diverged or got bad input)")
    _, counts = torch.unique(group_ids, return_counts=True)
    if (counts < 2).any():
        raise GroupSizeError(
            f"every group needs >= 2 paths for within-group ranking; got group sizes {sorted(counts.tolist())}"
        )


class HybridRankRegLoss(nn.Module):
    """``λ · L_reg + (1 − λ) · L_rank`` over within-group pairs (see the module doc).

    Args:
        lam: λ ∈ [0, 1]; 1 = pure regression, 0 = pure ranking.
        margin: m ≥ 0 in ``−log σ(s_j − s_k − m)`` (and the hinge margin).
        delta: δ ≥ 0: a pair counts only when ``q_j > q_k + δ``.
        rank_loss: ``"pairwise_logistic"`` (default), ``"margin_hinge"`` or ``"listnet"``.
        reg_loss: ``"mse"`` (on σ(s)) or ``"bce"`` (with logits; targets must lie in [0, 1]).
    """

    def __init__(
        self,
        lam: float = 0.5,
        margin: float = 0.0,
        delta: float = 0.0,
        rank_loss: str = "pairwise_logistic",
        reg_loss: str = "mse",
    ):
        super().__init__()
        if not 0 <= lam <= 1:
            raise EGRMValueError(f"lam must lie in [0, 1], got {lam}")
        if margin < 0 or delta < 0:
            raise EGRMValueError(
                f"margin and delta must be >= 0, got margin={margin}, delta={delta}"
            )
        if rank_loss not in RANK_LOSSES:
            raise EGRMValueError(f"rank_loss must be one of {RANK_LOSSES}, got {rank_loss!r}")
        if reg_loss not in REG_LOSSES:
            raise EGRMValueError(f"reg_loss must be one of {REG_LOSSES}, got {reg_loss!r}")
        self.lam, self.margin, self.delta = float(lam), float(margin), float(delta)
        self.rank_loss, self.reg_loss = rank_loss, reg_loss

    def regression_term(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``mean_j (σ(s_j) − q_j)²`` or BCE-with-logits."""
        if self.reg_loss == "bce":
            if (targets < 0).any() or (targets > 1).any():
                raise TargetError(
                    f"reg_loss='bce' needs targets in [0, 1], got min {targets.min().item()}, max {targets.max().item()}"
                )
            return F.binary_cross_entropy_with_logits(scores, targets)
        return ((torch.sigmoid(scores) - targets) ** 2).mean()

    def ranking_term(
        self, scores: torch.Tensor, targets: torch.Tensor, group_ids: torch.Tensor
    ) -> torch.Tensor:
        """The ranking term over within-group pairs (0 when there is no ordered pair)."""
        if self.rank_loss == "listnet":
            losses = []
            for g in torch.unique(group_ids):
                idx = group_ids == g
                q, s = targets[idx], scores[idx]
                if bool((q == q[0]).all()):
                    continue
                losses.append(-(torch.softmax(q, 0) * torch.log_softmax(s, 0)).sum())
            return torch.stack(losses).mean() if losses else scores.sum() * 0.0
        same = group_ids[:, None] == group_ids[None, :]
        better = targets[:, None] > targets[None, :] + self.delta  # [j, k]: q_j > q_k + δ
        pairs = same & better
        if not bool(pairs.any()):
            return scores.sum() * 0.0
        diff = (scores[:, None] - scores[None, :])[pairs]  # s_j − s_k
        if self.rank_loss == "margin_hinge":
            return F.relu(self.margin - diff).mean()
        return -F.logsigmoid(diff - self.margin).mean()

    def forward(
        self, scores: torch.Tensor, targets: torch.Tensor, group_ids: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss. ``scores`` [B] logits, ``targets`` [B] q, ``group_ids`` [B] ints.

        Raises:
            ShapeMismatchError: not 1-D or different lengths. TargetError: NaN targets (or out of
            [0, 1] with ``reg_loss="bce"``). GroupSizeError: a group with a single path.
        """
        check_loss_inputs(scores, targets, group_ids)
        targets = targets.to(scores.dtype)
        total = scores.new_zeros(())
        if self.lam > 0:
            total = total + self.lam * self.regression_term(scores, targets)
        if self.lam < 1:
            total = total + (1 - self.lam) * self.ranking_term(scores, targets, group_ids)
        return total
