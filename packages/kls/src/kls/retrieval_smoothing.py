"""KLS for retrieval (§2.3 [inferred design]): soft labels over each query's candidate group.

A document's keywords are its top-``doc_top_k`` terms by BM25 term weight inside the document, with
weights ω_{d,w} (normalised to sum 1). Relevance ``r(q, d) = Σ_{w ∈ q ∩ K_d} ω_{d,w} · idf(w)``; over
a group G_q = (d⁺, d⁻_1 … d⁻_N): ``q(d | q) = softmax((r / max r) / τ)`` and
``ỹ = (1 − α)·onehot(d⁺) + α·q``, stored as the ``label`` column for
:class:`kls.SoftLabelRankingLoss`. All scoring is sparse-matrix products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls._checks import check_range
from kls._math import softmax_rows
from kls.errors import EmptyInputError, NotFittedError, OutOfRangeError
from kls.groups import check_group, group_label, negative_columns, read_groups
from kls.weighting import BM25Weighter


class RetrievalKeywordSmoother:
    """Keyword soft labels over retrieval groups (KLS §2.3).

    Args:
        alpha: mixing weight α ∈ [0, 1) (default 0.2).
        tau: softmax temperature τ > 0 over the max-normalised relevance (0.5).
        doc_top_k: keywords per document K_d ≥ 1 (10).
        weighter: a fitted-or-not term weighter with ``matrix(texts)``, ``idf_`` and ``vocabulary_``
            (default :class:`kls.weighting.BM25Weighter`).
    """

    def __init__(
        self, alpha: float = 0.2, tau: float = 0.5, doc_top_k: int = 10, weighter: Any = None
    ):
        self.alpha = check_range("alpha", alpha, low=0.0, high=1.0, high_open=True)
        self.tau = check_range("tau", tau, low=0.0, low_open=True)
        if int(doc_top_k) != doc_top_k or doc_top_k < 1:
            raise OutOfRangeError(f"doc_top_k must be an integer >= 1, got {doc_top_k!r}")
        self.doc_top_k = int(doc_top_k)
        self.weighter = weighter if weighter is not None else BM25Weighter()

    def fit(self, corpus: Mapping[str, str] | Sequence[str]) -> RetrievalKeywordSmoother:
        """Learn IDF (and avgdl) from the corpus (all documents, also in the cold-start setting)."""
        texts = list(corpus.values()) if isinstance(corpus, Mapping) else list(corpus)
        if not texts:
            raise EmptyInputError("RetrievalKeywordSmoother.fit needs a non-empty corpus")
        self.weighter.fit(texts)
        self.idf_ = np.asarray(self.weighter.idf_, dtype=np.float64)
        return self

    def doc_keywords(self, docs: Sequence[str]) -> sp.csr_matrix:
        """``[n, V]``: ω_{d,w} · idf(w) on each document's top-K_d BM25 terms (ω sums to 1 per document)."""
        W = self.weighter.matrix(docs).tocsr()
        K = W.copy()
        for i in range(K.shape[0]):  # keep the top-K_d non-zeros of each row
            lo, hi = K.indptr[i], K.indptr[i + 1]
            if hi - lo > self.doc_top_k:
                row = K.data[lo:hi]
                cut = np.argsort(-row, kind="stable")[self.doc_top_k :]
                row[cut] = 0.0
        K.eliminate_zeros()
        s = np.asarray(K.sum(axis=1)).ravel()
        K = sp.diags(np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)) @ K  # ω_{d,w}
        return (K @ sp.diags(self.idf_)).tocsr()

    def relevance(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """``r(q_i, d_i)`` for aligned lists of queries and documents, ``[n]``."""
        if not hasattr(self, "idf_"):
            raise NotFittedError("RetrievalKeywordSmoother: call fit(corpus) first")
        Q = self.weighter.matrix(queries)
        Q.data[:] = 1.0  # q ∩ K_d: binary query terms
        D = self.doc_keywords(docs)
        return np.asarray(Q.multiply(D).sum(axis=1)).ravel()

    def _labels(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
        n, g = len(groups), len(groups[0])
        flat_q = [q for q in queries for _ in range(g)]
        flat_d = [d for grp in groups for d in grp]
        R = self.relevance(flat_q, flat_d).reshape(n, g)
        r_tilde = R / (R.max(axis=1, keepdims=True) + 1e-9)
        P = softmax_rows(r_tilde, self.tau)
        zero = ~R.any(axis=1)
        P[zero] = 1.0 / g
        return np.vstack([group_label(p, self.alpha) for p in P])

    def soft_labels(self, query: str, group: Sequence[str]) -> np.ndarray:
        """ỹ over ``group`` (``group[0]`` = the positive), a vector of ``len(group)`` floats summing to 1."""
        check_group(group)
        return self._labels([query], [list(group)])[0]

    def to_dataset(
        self,
        ds: Any,
        query_col: str = "anchor",
        pos_col: str = "positive",
        neg_cols: Sequence[str] | None = None,
        out_col: str = "label",
    ) -> Any:
        """Add the soft group label ``[1 + N]`` of every row as ``out_col``."""
        neg_cols = negative_columns(ds, query_col, pos_col, neg_cols)
        queries, groups = read_groups(ds, query_col, pos_col, neg_cols)
        Y = self._labels(queries, groups)
        if out_col in ds.column_names:
            ds = ds.remove_columns(out_col)
        return ds.add_column(out_col, Y.astype(np.float32).tolist())


__all__ = ["RetrievalKeywordSmoother"]
