"""§2.2 keyword source ``"label_names"`` [inferred]: the words of each label's name (+ seed words)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from kls.smoothers.variant import KeywordVariantSmoother


class LabelNameKeywordSmoother(KeywordVariantSmoother):
    """Keywords = the tokens of ``label_names[c]`` (default ``str(c)``) and ``seed_words[c]``, weight 1 each."""

    source = "label_names"

    def _keyword_weights(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        vocab, V = self.counter_.vocabulary_, F.shape[1]
        return np.vstack([self._name_keywords(c, vocab, V) for c in self.classes_])


__all__ = ["LabelNameKeywordSmoother"]
