"""KLS: keyword-based soft labels for classification (the reference algorithm, §2.0, and variants, §2.2).

The public entry points, kept here for import stability; each variant lives in its own module
under :mod:`kls.smoothers`:

* :class:`KeywordLabelSmoother` (:mod:`kls.smoothers.keyword`) — ``KeywordLabelSmoother(source, ...)``
  builds the variant class of ``keyword_source``; all share :class:`KLSConfig`, ``fit`` /
  ``transform`` / ``to_dataset`` and ``save_pretrained`` / ``from_pretrained``;
* ``"reference"`` (default, §2.0) — :class:`ReferenceKeywordSmoother` (:mod:`kls.smoothers.reference`):
  the authors' public reference implementation (label-level BM25 × instance weights, softmax over
  the average text length); ``transform`` returns q(x), the target of the reference's auxiliary
  head (:func:`kls.losses.two_head_loss`), or with ``alpha`` the §2.1 mixture
  ``ỹ = (1 − α)·y + α·q`` [inferred];
* §2.2 variants [inferred] — top-K keywords per class (:mod:`~kls.smoothers.ctfidf`,
  :mod:`~kls.smoothers.chi2`, :mod:`~kls.smoothers.label_names`, :mod:`~kls.smoothers.given`), scored
  against a text by BM25 or TF-IDF cosine (:mod:`kls.smoothers.variant`), then
  ``q = softmax((r / max_c r) / τ)``;
* :class:`UniformLabelSmoother` (:mod:`kls.smoothers.uniform`) — classic label smoothing
  (Szegedy et al. 2016), the baseline, in the same shape.

A new variant is a new module: subclass :class:`~kls.smoothers.variant.KeywordVariantSmoother`,
implement ``_keyword_weights``, and register it in :data:`kls.smoothers.config.SOURCES` and
:data:`kls.smoothers.base.CLASSES`. All statistics are scipy sparse matrices.
"""

from __future__ import annotations

from kls.smoothers.base import LabelSmoother
from kls.smoothers.chi2 import Chi2KeywordSmoother
from kls.smoothers.config import KeywordSource, KLSConfig, Relevance
from kls.smoothers.ctfidf import CTFIDFKeywordSmoother
from kls.smoothers.given import GivenKeywordSmoother
from kls.smoothers.keyword import KeywordLabelSmoother
from kls.smoothers.label_names import LabelNameKeywordSmoother
from kls.smoothers.reference import ReferenceKeywordSmoother
from kls.smoothers.uniform import UniformLabelSmoother

__all__ = [
    "CTFIDFKeywordSmoother",
    "Chi2KeywordSmoother",
    "GivenKeywordSmoother",
    "KLSConfig",
    "KeywordLabelSmoother",
    "KeywordSource",
    "LabelNameKeywordSmoother",
    "LabelSmoother",
    "ReferenceKeywordSmoother",
    "Relevance",
    "UniformLabelSmoother",
]
