"""§2.2 keyword source ``"chi2"`` [inferred]: one-vs-rest χ², top-K over-represented terms per class."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from kls.smoothers.variant import KeywordVariantSmoother


class Chi2KeywordSmoother(KeywordVariantSmoother):
    """Keywords by χ² of each term vs class c (one-vs-rest), kept where the term is over-represented in c."""

    source = "chi2"

    def _keyword_weights(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        from sklearn.feature_selection import chi2

        L = len(self.classes_)
        Xb = (X > 0).astype(np.float64)
        rate_all = np.asarray(Xb.mean(axis=0)).ravel()
        out = np.zeros((L, X.shape[1]))
        for i in range(L):
            stat, _ = chi2(X, (y == i).astype(int))
            rate_c = np.asarray(Xb[y == i].mean(axis=0)).ravel()
            out[i] = np.where(rate_c > rate_all, np.nan_to_num(stat), 0.0)
        return self._top_k(out)


__all__ = ["Chi2KeywordSmoother"]
