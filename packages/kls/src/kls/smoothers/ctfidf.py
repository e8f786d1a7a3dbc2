"""§2.2 keyword source ``"ctfidf"`` [inferred]: class-based TF-IDF, top-K terms per class."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from kls.smoothers.variant import KeywordVariantSmoother


class CTFIDFKeywordSmoother(KeywordVariantSmoother):
    """Keywords by c-TF-IDF: ``tf(w,c) · log(1 + A / tf(w, all classes))``, A = mean tokens per class."""

    source = "ctfidf"

    def _keyword_weights(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        Fd = F.toarray()
        tf_all = Fd.sum(axis=0)
        A = Fd.sum() / Fd.shape[0]
        with np.errstate(divide="ignore"):
            idf = np.where(tf_all > 0, np.log1p(A / np.maximum(tf_all, 1e-12)), 0.0)
        return self._top_k(Fd * idf)


__all__ = ["CTFIDFKeywordSmoother"]
