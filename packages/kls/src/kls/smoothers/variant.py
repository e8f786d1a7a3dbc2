"""The §2.2 variants' shared half [inferred]: top-K keywords ω per class, scored against a text.

A variant picks its keyword weights (``_keyword_weights``: a ``[L, V]`` array, one row per class);
this base keeps each row's top-K, normalises ``Σ_w ω_{c,w} = 1``, and scores a text by
``relevance="bm25"`` (``Σ_w ω_{c,w}·bm25(w, x)``, Lucene IDF on the training split) or
``"tfidf_cosine"``; then ``q = softmax((r / max_c r) / τ)`` (τ = 0.5 by default), uniform when a
text has no keyword at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls._math import softmax_rows
from kls.errors import TooFewExamplesError
from kls.smoothers.base import sparse_from_arrays, sparse_to_arrays
from kls.smoothers.keyword import KeywordLabelSmoother
from kls.weighting import saturate


class KeywordVariantSmoother(KeywordLabelSmoother):
    """Base of the §2.2 keyword sources (not built directly)."""

    source = ""

    def _keyword_weights(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        """``[L, V]`` non-negative keyword weights (before normalisation)."""
        raise NotImplementedError

    def _top_k(self, score: np.ndarray) -> np.ndarray:
        """Keep each class's ``top_k`` positive-scored terms of ``score`` ``[L, V]``.

        Stop words and terms seen in fewer than 2 training texts (df < 2, hapax noise) are
        excluded; for a class with a single training text the bar is df ≥ 1, since every word
        that only that class uses has df = 1 (long-tailed label sets).
        """
        L, V = score.shape
        ok = np.ones(V, dtype=bool)
        if self.stopwords:
            ok = ~np.isin(self.counter_.terms_, list(self.stopwords))
        rows = []
        for i in range(L):  # per class (L iterations), not per word
            min_df = min(2, int(self.class_counts_[i]))
            s = np.where(ok & (self.df_ >= min_df), score[i], 0.0)
            top = np.argsort(-s, kind="stable")[: self.config.top_k]
            top = top[s[top] > 0]
            w = np.zeros(V)
            w[top] = s[top]
            rows.append(w)
        return np.vstack(rows)

    def _fit_source(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> None:
        vocab, V = self.counter_.vocabulary_, F.shape[1]
        Om = np.asarray(self._keyword_weights(X, y, F), dtype=np.float64)
        empty = [self.classes_[i] for i in np.flatnonzero(Om.sum(axis=1) <= 0)]
        if empty and self.config.allow_fallback and self.source != "label_names":
            for c in empty:
                Om[self._index[c]] = self._name_keywords(c, vocab, V)
            empty = [self.classes_[i] for i in np.flatnonzero(Om.sum(axis=1) <= 0)]
        if empty:
            raise TooFewExamplesError(
                f"no extractable keyword for class(es) {empty} (keyword_source={self.source!r}); "
                "pass allow_fallback=True to use the label names"
            )
        Om /= Om.sum(axis=1, keepdims=True)  # Σ_w ω_{c,w} = 1
        self.omega_ = sp.csr_matrix(Om)  # [L, V]
        self._fit_instance_stats(X.shape[0])

    def _fit_instance_stats(self, n: int) -> None:
        """Corpus statistics of the instance scoring (training split only)."""
        self.bm25_idf_ = np.log1p((n - self.df_ + 0.5) / (self.df_ + 0.5))
        self.avgdl_ = self.avg_token_len_ or 1.0
        self.tfidf_idf_ = np.log((1.0 + n) / (1.0 + self.df_)) + 1.0

    def _weights_from_dict(self, kw: Mapping[str, float], vocab: dict, V: int) -> np.ndarray:
        w = np.zeros(V)
        for word, v in kw.items():
            j = vocab.get(word)
            if j is not None:
                w[j] += float(v)
        return w

    def _name_keywords(self, c: Any, vocab: dict, V: int) -> np.ndarray:
        name = (self.config.label_names or {}).get(c, str(c))
        words = list(self.tokenize(str(name))) + list((self.config.seed_words or {}).get(c, ()))
        return self._weights_from_dict(dict.fromkeys(words, 1.0), vocab, V)

    def _keyword_matrix(self) -> sp.csr_matrix:
        return self.omega_

    def relevance(self, texts: Sequence[str]) -> np.ndarray:
        X = self._counts(texts)
        c = self.config
        if c.relevance == "bm25":
            dl = np.asarray(X.sum(axis=1)).ravel()
            K = c.bm25_k1 * (1.0 - c.bm25_b + c.bm25_b * dl / self.avgdl_)
            B = saturate(X, K, numerator=c.bm25_k1 + 1.0) @ sp.diags(self.bm25_idf_)
            return np.asarray((B @ self.omega_.T).todense())  # Σ_w ω_{c,w}·bm25(w, x)
        T = X.copy()
        T.data = 1.0 + np.log(T.data)
        T = T @ sp.diags(self.tfidf_idf_)
        K = self.omega_ @ sp.diags(self.tfidf_idf_)
        num = np.asarray((T @ K.T).todense())
        tn = np.sqrt(np.asarray(T.multiply(T).sum(axis=1)).ravel())
        kn = np.sqrt(np.asarray(K.multiply(K).sum(axis=1)).ravel())
        return num / np.maximum(np.outer(tn, kn), 1e-12)

    def _q(self, S: np.ndarray) -> np.ndarray:
        tau = self.config.tau if self.config.tau is not None else 0.5
        r_tilde = S / (S.max(axis=1, keepdims=True) + 1e-9)
        q = softmax_rows(r_tilde, tau)
        q[~S.any(axis=1)] = 1.0 / S.shape[1]  # classic-LS fallback
        return q

    def _state(self):
        meta, arrays = super()._state()
        arrays.update(sparse_to_arrays("omega", self.omega_))
        meta["avgdl"] = float(self.avgdl_)
        return meta, arrays

    def _load_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        super()._load_state(meta, arrays)
        self.omega_ = sparse_from_arrays("omega", arrays)
        self._fit_instance_stats(self.n_train_)
        self.avgdl_ = float(meta["avgdl"])


__all__ = ["KeywordVariantSmoother"]
