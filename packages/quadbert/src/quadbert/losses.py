"""The QuadrupletBERT loss as a sentence-transformers loss (``Loss(model, **hyperparams)``).

A training example is a quadruplet (q, p, h, s): query, relevant document, hard negative (ranked high
by BM25 or a model but not relevant) and simple negative (a random non-relevant document outside the
hard pool). The four columns go through the same encoder (the paper's "four towers" share weights).

Default ``variant="hard_simple"`` [inferred: the abstract fixes the ingredients, not the exact form],
after the quadruplet loss of Chen et al. (CVPR 2017) with the second negative specialised to "simple"::

    L_trip = [ m1 + d(q,p) − d(q,h) ]_+          # triplet on the hard negative
    L_quad = [ m2 + d(q,p) − d(h,s) ]_+          # hard vs simple negative distance
    L      = mean_batch( L_trip + μ · L_quad )   (+ ω · MNRL over the batch's p/h/s, off by default)

``variant="ordered"`` reads "positives and hard negatives separated from negatives" as an order
p < h < s around the query::

    L_quad = [ m2 + d(q,h) − d(q,s) ]_+ + [ m2 + d(q,p) − d(q,s) ]_+

Several hard negatives h_1 … h_N per row (columns anchor, positive, h_1 … h_N, simple_negative,
e.g. from ``build_quadruplets(n_hard=N)``): both terms are averaged over j = 1 … N, so N = 1 is
the loss above and every hard negative weighs the same whatever N.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quadbert.errors import LossConfigError

logger = logging.getLogger(__name__)

Distance = Literal["euclidean", "cosine"]
Variant = Literal["hard_simple", "ordered"]

COLUMNS = ("anchor", "positive", "hard_negative", "simple_negative")
_COLUMN_ERROR = (
    "QuadrupletLoss expects (anchor, positive, hard_negative, simple_negative), or with several "
    "hard negatives (anchor, positive, hard_negative_1, ..., hard_negative_N, simple_negative)"
)

CITATION = """
@inproceedings{liu-etal-2021-quadrupletbert,
    title = "{Q}uadruplet{BERT}: An Efficient Model For Embedding-Based Large-Scale Retrieval",
    author = "Liu, Peiyang and Wang, Sen and Wang, Xi and Ye, Wei and Zhang, Shikun",
    booktitle = "Proceedings of the 2021 Conference of the North American Chapter of the Association for Computational Linguistics: Human Language Technologies",
    year = "2021",
    publisher = "Association for Computational Linguistics",
    pages = "3734--3739",
    doi = "10.18653/v1/2021.naacl-main.292",
}
"""


def pairwise_distance(a: Tensor, b: Tensor, distance: Distance) -> Tensor:
    """Row-wise distance ``d(a[i], b[i])``: ``‖a − b‖₂`` (euclidean) or ``1 − cos`` (cosine); shape ``[B]``."""
    if distance == "euclidean":
        return torch.linalg.vector_norm(a - b, dim=-1)
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


class QuadrupletLoss(nn.Module):
    """Margin loss on (anchor, positive, hard_negative, simple_negative) quadruplets.

    Args:
        model: the ``SentenceTransformer`` being trained (one shared encoder for all four columns).
        margin: m1, triplet margin between d(q,p) and d(q,h). [inferred default 0.5]
        quad_margin: m2, margin of the quadruplet term (m2 < m1 as in Chen et al.). [inferred default 0.25]
        quad_weight: μ, weight of the quadruplet term; 0 gives the plain triplet loss. [inferred default 1.0]
        distance: ``"euclidean"`` (‖a − b‖₂, the default) or ``"cosine"`` (1 − cos).
        variant: ``"hard_simple"`` (default) or ``"ordered"``, see the module docstring.
        in_batch_weight: ω, weight of an added MultipleNegativesRankingLoss over the batch's
            positives, hard and simple negatives (0 = paper-faithful, the default).
        scale: temperature inverse of that in-batch term (sentence-transformers' default 20).
        normalize: L2-normalise the embeddings before the distances, so d ∈ [0, 2] whatever the
            model's last module is. [inferred] With a model that already ends in ``Normalize``
            (e.g. all-MiniLM-L6-v2) this changes nothing.

    Inputs: four text columns in the order above, or 3 + N with N hard negatives between the
    positive and the simple negative (the last column); labels are ignored.
    """

    def __init__(
        self,
        model: Any,
        margin: float = 0.5,
        quad_margin: float = 0.25,
        quad_weight: float = 1.0,
        distance: Distance = "euclidean",
        variant: Variant = "hard_simple",
        in_batch_weight: float = 0.0,
        scale: float = 20.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("margin", margin),
            ("quad_margin", quad_margin),
            ("quad_weight", quad_weight),
            ("in_batch_weight", in_batch_weight),
        ):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise LossConfigError(f"{name} must be a number, got {type(value).__name__}")
            if value < 0:
                raise LossConfigError(f"{name} must be >= 0, got {value}")
        if distance not in ("euclidean", "cosine"):
            raise LossConfigError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
        if variant not in ("hard_simple", "ordered"):
            raise LossConfigError(f"variant must be 'hard_simple' or 'ordered', got {variant!r}")
        if scale <= 0:
            raise LossConfigError(f"scale must be > 0, got {scale}")
        if normalize:
            # both distances lie in [0, 2] on unit vectors, so a larger margin can never be met
            for name, value in (("margin", margin), ("quad_margin", quad_margin)):
                if value > 2:
                    logger.warning(
                        "%s=%s > 2 can never be satisfied: %s distances between normalised "
                        "embeddings lie in [0, 2], so every example keeps a positive loss",
                        name,
                        value,
                        distance,
                    )
        self.model = model
        self.margin = float(margin)
        self.quad_margin = float(quad_margin)
        self.quad_weight = float(quad_weight)
        self.distance = distance
        self.variant = variant
        self.in_batch_weight = float(in_batch_weight)
        self.scale = float(scale)
        self.normalize = bool(normalize)

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None
    ) -> Tensor:
        """Embed the four columns with the shared encoder and return the scalar loss."""
        features = list(sentence_features)
        if len(features) < 4:
            raise LossConfigError(f"{_COLUMN_ERROR}; got {len(features)} input column(s)")
        return self.compute_loss_from_embeddings(_embed(self.model, features))

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None
    ) -> Tensor:
        """The loss from ``3 + N`` ``[B, h]`` embedding tensors (anchor, positive, N hard, simple)."""
        if len(embeddings) < 4:
            raise LossConfigError(f"{_COLUMN_ERROR}; got {len(embeddings)} embedding tensor(s)")
        if self.normalize:
            embeddings = [F.normalize(e, p=2, dim=-1) for e in embeddings]
        q, p, *hards, s = embeddings
        d_qp = pairwise_distance(q, p, self.distance)
        d_qs = pairwise_distance(q, s, self.distance)
        trip = q.new_zeros(q.shape[0])
        quad = q.new_zeros(q.shape[0])
        for h in hards:  # averaged over the N hard negatives
            d_qh = pairwise_distance(q, h, self.distance)
            trip = trip + F.relu(self.margin + d_qp - d_qh)  # [m1 + d(q,p) − d(q,h_j)]_+
            if self.variant == "hard_simple":
                d_hs = pairwise_distance(h, s, self.distance)
                quad = quad + F.relu(self.quad_margin + d_qp - d_hs)  # [m2 + d(q,p) − d(h_j,s)]_+
            else:
                quad = quad + F.relu(self.quad_margin + d_qh - d_qs)
        n = len(hards)
        trip, quad = trip / n, quad / n
        if self.variant == "ordered":
            quad = quad + F.relu(self.quad_margin + d_qp - d_qs)
        loss = (trip + self.quad_weight * quad).mean()
        if self.in_batch_weight > 0:
            loss = loss + self.in_batch_weight * self._in_batch_term(q, p, *hards, s)
        return loss

    def _in_batch_term(self, q: Tensor, p: Tensor, *negatives: Tensor) -> Tensor:
        """ω-term: sentence-transformers' MultipleNegativesRankingLoss over the batch's p/h/s documents."""
        if not hasattr(self, "_mnrl"):
            from sentence_transformers.sentence_transformer.losses import (
                MultipleNegativesRankingLoss,
            )

            # kept out of the module tree: it holds a second reference to the model
            object.__setattr__(
                self, "_mnrl", MultipleNegativesRankingLoss(self.model, scale=self.scale)
            )
        return self._mnrl.compute_loss_from_embeddings([q, p, *negatives], None)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "margin": self.margin,
            "quad_margin": self.quad_margin,
            "quad_weight": self.quad_weight,
            "distance": self.distance,
            "variant": self.variant,
            "in_batch_weight": self.in_batch_weight,
            "scale": self.scale,
            "normalize": self.normalize,
        }

    @property
    def citation(self) -> str:
        return CITATION


def _embed(model: Any, features: list[dict[str, Tensor]]) -> list[Tensor]:
    """One ``sentence_embedding`` per column, from sentence-transformers' merged forward (ST ≥ 6)."""
    from sentence_transformers.base.losses.merged_forward import embed_columns

    return embed_columns(model, features)
