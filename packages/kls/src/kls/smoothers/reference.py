"""KLS as the authors' public reference implementation computes it (§2.0), the default source.

1. label–word relevance, BM25 with each label as one document [from code]::

       K_i      = k1 · (1 − b + b · len_i / avglen)
       wlc_i(w) = f_i(w) · k1 / (f_i(w) + K_i)           # numerator f·k1, not f·(k1+1)
       wlw(w)   = ln(L / L_w) + 1
       wlr_i(w) = wlc_i(w) · wlw(w)

2. instance–word weight: ``wic(w) = f_x(w)·k2/(f_x(w)+k2)``, ``wiw(w) = ln(N/df(w)) + 1``,
   ``wir(w) = wiw(w)·wic(w)``;
3. ``s_i(x) = Σ_{w∈set(x)} wlr_i(w)·wir(w)`` and ``q(x) = softmax(s(x) / avg_token_len)``.

Defaults k1 = 2.0, b = 0.75, k2 = 2.0; whitespace tokens; statistics from the training split only.
A label with a single training text is a one-text "document" (len_i = its length): the formulas
are defined for it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls._math import softmax_rows
from kls.smoothers.base import sparse_from_arrays, sparse_to_arrays
from kls.smoothers.keyword import KeywordLabelSmoother
from kls.weighting import idf_reference, saturate


class ReferenceKeywordSmoother(KeywordLabelSmoother):
    """The reference KLS (§2.0); ``KeywordLabelSmoother()`` builds one."""

    source = "reference"

    def _fit_source(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> None:
        c = self.config
        L = F.shape[0]
        len_i = np.asarray(F.sum(axis=1)).ravel()  # total tokens of label i
        avglen = len_i.mean()
        K = c.k1 * (1.0 - c.b + c.b * len_i / avglen)  # K_i
        wlc = saturate(F, K, numerator=c.k1)  # f_i(w)·k1 / (f_i(w) + K_i)
        L_w = np.asarray((F > 0).sum(axis=0)).ravel()  # labels whose texts contain w
        wlw = idf_reference(L, L_w)  # ln(L / L_w) + 1
        self.label_word_ = (wlc @ sp.diags(wlw)).tocsr()  # wlr_i(w)  [L, V]
        self.iwiw_ = idf_reference(self.n_train_, self.df_)  # wiw(w) = ln(N/df) + 1

    def _keyword_matrix(self) -> sp.csr_matrix:
        return self.label_word_

    def relevance(self, texts: Sequence[str]) -> np.ndarray:
        X = self._counts(texts)
        wir = saturate(X, self.config.k2, numerator=self.config.k2) @ sp.diags(self.iwiw_)
        return np.asarray((wir @ self.label_word_.T).todense())  # s_i(x)

    def _q(self, S: np.ndarray) -> np.ndarray:
        tau = self.config.tau if self.config.tau is not None else self.avg_token_len_
        return softmax_rows(S, tau)  # softmax(s / avg_token_len)

    def _state(self):
        meta, arrays = super()._state()
        arrays.update(sparse_to_arrays("label_word", self.label_word_))
        arrays["iwiw"] = self.iwiw_
        return meta, arrays

    def _load_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        super()._load_state(meta, arrays)
        self.label_word_ = sparse_from_arrays("label_word", arrays)
        self.iwiw_ = arrays["iwiw"]


__all__ = ["ReferenceKeywordSmoother"]
