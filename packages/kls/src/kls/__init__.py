"""kls: keyword label smoothing (KLS) and label enhancement (LE) — soft labels for text
classification and embedding retrieval.

* :class:`KeywordLabelSmoother` — KLS for classification (the authors' reference algorithm by
  default), :class:`UniformLabelSmoother` — classic label smoothing, the baseline;
* :class:`KLSTrainer` / :class:`KLSTrainingArguments` — transformers training with the soft labels
  (two-head reference objective; the auxiliary head is dropped at save time);
* :class:`DeepCTWeighter` — DeepCT-style dynamic term weights (the ``"deepct"`` prior of LE);
* :class:`RetrievalKeywordSmoother`, :class:`LabelEnhancer` (+ :class:`LabelPropagationEnhancer`,
  :class:`KNNSmoothingEnhancer`) and :class:`SoftLabelRankingLoss` — soft labels over retrieval
  groups and the sentence-transformers loss that consumes them.

Names are imported lazily so that ``kls --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("kls")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "kls.smoothing": ("KLSConfig", "KeywordLabelSmoother", "UniformLabelSmoother"),
    "kls.retrieval_smoothing": ("RetrievalKeywordSmoother",),
    "kls.enhancement": ("KNNSmoothingEnhancer", "LabelEnhancer", "LabelPropagationEnhancer"),
    "kls.losses": ("soft_cross_entropy", "soft_target_loss", "two_head_loss"),
    "kls.ranking": ("SoftLabelRankingLoss",),
    "kls.trainer": ("KLSTrainer", "KLSTrainingArguments", "attach_aux_head", "detach_aux_head"),
    "kls.weighting": ("BM25Weighter", "TermWeighter", "TfidfWeighter"),
    "kls.deepct": ("DeepCTWeighter", "query_term_recall"),
    "kls.tokenize": ("char_tokenize", "resolve_tokenizer", "whitespace_tokenize"),
    "kls.data": (
        "cold_start_split",
        "make_synthetic_classification",
        "make_synthetic_retrieval",
        "make_training_groups",
    ),
    "kls._checks": ("validate_soft_labels",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BM25Weighter",
    "DeepCTWeighter",
    "KLSTrainer",
    "KLSConfig",
    "KLSTrainingArguments",
    "KNNSmoothingEnhancer",
    "KeywordLabelSmoother",
    "LabelEnhancer",
    "LabelPropagationEnhancer",
    "RetrievalKeywordSmoother",
    "SoftLabelRankingLoss",
    "TermWeighter",
    "TfidfWeighter",
    "UniformLabelSmoother",
    "attach_aux_head",
    "char_tokenize",
    "cold_start_split",
    "detach_aux_head",
    "make_synthetic_classification",
    "make_synthetic_retrieval",
    "make_training_groups",
    "query_term_recall",
    "resolve_tokenizer",
    "soft_cross_entropy",
    "soft_target_loss",
    "two_head_loss",
    "validate_soft_labels",
    "whitespace_tokenize",
]


__getattr__ = lazy_getattr(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from kls._checks import validate_soft_labels
    from kls.data import (
        cold_start_split,
        make_synthetic_classification,
        make_synthetic_retrieval,
        make_training_groups,
    )
    from kls.deepct import DeepCTWeighter, query_term_recall
    from kls.enhancement import KNNSmoothingEnhancer, LabelEnhancer, LabelPropagationEnhancer
    from kls.losses import soft_cross_entropy, soft_target_loss, two_head_loss
    from kls.ranking import SoftLabelRankingLoss
    from kls.retrieval_smoothing import RetrievalKeywordSmoother
    from kls.smoothing import KeywordLabelSmoother, KLSConfig, UniformLabelSmoother
    from kls.tokenize import char_tokenize, resolve_tokenizer, whitespace_tokenize
    from kls.trainer import KLSTrainer, KLSTrainingArguments, attach_aux_head, detach_aux_head
    from kls.weighting import BM25Weighter, TermWeighter, TfidfWeighter
