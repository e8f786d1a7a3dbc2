"""§2.3's bi-encoder objective as a sentence-transformers loss: in-batch MNRL + λ·KL on the soft group label.

Columns ``(anchor, positive, negative_1, …, negative_N)`` plus a ``label`` column holding the soft
label ``ỹ`` over the query's own group ``(d⁺, d⁻_1 … d⁻_N)`` (list of 1 + N floats, summing to 1)::

    L_hard = MNRL(anchor, positive, negatives)                     # in-batch softmax, scale σ
    L_soft = KL(ỹ_i ‖ softmax(σ · cos(q_i, G_{q_i}) / T))           # own group only, [B, 1+N]
    L      = L_hard + λ · L_soft

The hard part *is* sentence-transformers' ``MultipleNegativesRankingLoss`` computed on the same
embeddings, so λ = 0 gives MNRL exactly. With ``in_batch=False`` the hard part is cross-entropy over
the query's own group only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

from kls._checks import check_range
from kls.errors import InvalidGroupError, InvalidSoftLabelError


class SoftLabelRankingLoss(nn.Module):
    """Sentence-transformers loss for soft group labels (KLS §2.3 and LE §2.4 targets).

    Args:
        model: the ``SentenceTransformer`` being trained.
        scale: σ, the cosine-similarity scale (20, as MNRL).
        lam: λ ≥ 0, weight of the KL term (0 → plain MNRL).
        temperature: T > 0 of the group softmax.
        in_batch: hard part over all in-batch documents (MNRL) or the own group only.
    """

    def __init__(
        self,
        model: Any,
        scale: float = 20.0,
        lam: float = 1.0,
        temperature: float = 1.0,
        in_batch: bool = True,
    ):
        super().__init__()
        self.model = model
        self.scale = check_range("scale", scale, low=0.0, low_open=True)
        self.lam = check_range("lam", lam, low=0.0)
        self.temperature = check_range("temperature", temperature, low=0.0, low_open=True)
        self.in_batch = in_batch
        self.mnrl = MultipleNegativesRankingLoss(model, scale=scale)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if len(embeddings) < 2:
            raise InvalidGroupError(
                f"expected (anchor, positive[, negatives...]) columns, got {len(embeddings)}"
            )
        queries, docs = embeddings[0], embeddings[1:]
        group = 1 + (len(docs) - 1)
        if labels is None or labels.dim() != 2 or labels.shape[1] != group:
            shape = None if labels is None else tuple(labels.shape)
            raise InvalidSoftLabelError(
                f"the `label` column must hold {group} floats per row (positive + {group - 1} "
                f"negatives), got shape {shape}"
            )
        _check_label_rows(labels)
        # σ · cos(q_i, G_{q_i}), [B, 1+N]
        group_scores = (
            torch.stack([cos_sim(queries, d).diagonal() for d in docs], dim=1) * self.scale
        )
        if self.in_batch:
            hard = self.mnrl.compute_loss_from_embeddings(embeddings, labels)
        else:
            target = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
            hard = F.cross_entropy(group_scores, target)
        soft = labels.to(group_scores.dtype)
        log_p = F.log_softmax(group_scores / self.temperature, dim=-1)
        kl = F.kl_div(log_p, soft, reduction="batchmean")  # KL(ỹ ‖ p)
        return hard + self.lam * kl

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "lam": self.lam,
            "temperature": self.temperature,
            "in_batch": self.in_batch,
        }

    @property
    def citation(self) -> str:
        return (
            "@inproceedings{liu-etal-2022-label, title={Label Smoothing for Text Mining}, "
            "author={Liu, Peiyang and Xi, Xiangyu and Ye, Wei and Zhang, Shikun}, "
            "booktitle={COLING 2022}, pages={2210--2219}, year={2022}}"
        )


def _check_label_rows(labels: Tensor, atol: float = 1e-3) -> None:
    """Rows of the soft group label must be finite, ≥ 0 and sum to 1 (cheap: [B, 1+N])."""
    bad = ~torch.isfinite(labels).all(dim=1) | (labels < 0).any(dim=1)
    bad |= (labels.sum(dim=1) - 1).abs() > atol
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise InvalidSoftLabelError(
            f"`label` row {i} of the batch is not a distribution (finite, ≥ 0, sum 1): "
            f"{labels[i].tolist()}"
        )


__all__ = ["SoftLabelRankingLoss"]
