"""Soft-label objectives (torch): the reference two-head loss, the §2.1 CE + λ·KL, soft CE.

* :func:`two_head_loss` — §2.0, the reference: ``(CE(z₀, y) + α·MSE(q, softmax(z₁))) / (1 + α)²``
  with an auxiliary head z₁ that is dropped after training; α = 0 is plain fine-tuning.
* :func:`soft_target_loss` — §2.1 [inferred form]: ``CE(p, y) + λ·KL(ỹ ‖ p)``; λ = 0 is plain CE.
* :func:`soft_cross_entropy` — ``−Σ ỹ log p``; with the uniform ỹ of classic label smoothing it
  equals ``F.cross_entropy(logits, y, label_smoothing=ε)``.

The sentence-transformers ranking loss of §2.3 is :class:`kls.ranking.SoftLabelRankingLoss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kls._checks import check_range


def soft_cross_entropy(logits: Tensor, soft: Tensor) -> Tensor:
    """Batch mean of ``−Σ_c ỹ_c · log softmax(z)_c``. ``logits``, ``soft``: ``[B, C]``."""
    return -(soft * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def soft_target_loss(logits: Tensor, hard: Tensor, soft: Tensor, lam: float = 1.0) -> Tensor:
    """§2.1: ``CE(p, y) + λ·KL(ỹ ‖ p)`` with ``kl_div(log p, ỹ, reduction="batchmean")``.

    ``logits`` ``[B, C]``, ``hard`` ``[B]`` class indices, ``soft`` ``[B, C]`` rows summing to 1.
    With ``lam = 0`` the value is exactly ``F.cross_entropy(logits, hard)``.
    """
    check_range("lambda", lam, low=0.0)
    ce = F.cross_entropy(logits, hard)
    kl = F.kl_div(F.log_softmax(logits, dim=-1), soft.to(logits.dtype), reduction="batchmean")
    return ce + lam * kl


def two_head_loss(
    logits: Tensor, aux_logits: Tensor, hard: Tensor, q: Tensor, alpha: float = 1.0
) -> Tensor:
    """§2.0, the reference objective, per example ``CE₀ + α·MSE(q, softmax(z₁))``; batch mean / (1 + α)².

    ``logits`` (head 0, the classifier kept for inference) and ``aux_logits`` (head 1) are
    ``[B, C]``; ``q`` ``[B, C]`` is the KLS distribution; the MSE is the mean over the C classes
    [inferred: mean, as ``mean_squared_error``]. With ``alpha = 0`` it is exactly plain cross-entropy.
    """
    check_range("alpha", alpha, low=0.0)
    ce = F.cross_entropy(logits, hard, reduction="none")  # CE_0 per example
    mse = ((q.to(aux_logits.dtype) - torch.softmax(aux_logits, dim=-1)) ** 2).mean(dim=-1)
    return (ce + alpha * mse).mean() / (1.0 + alpha) ** 2


__all__ = ["soft_cross_entropy", "soft_target_loss", "two_head_loss"]
