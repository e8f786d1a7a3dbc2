"""§2.2 keyword source ``"given"``: the user's ``{label: {word: weight}}`` keywords."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from kls.errors import UnknownLabelError
from kls.smoothers.variant import KeywordVariantSmoother


class GivenKeywordSmoother(KeywordVariantSmoother):
    """Keywords given as ``keywords={label: {word: weight}}`` (words outside the training vocabulary are dropped)."""

    source = "given"

    def _keyword_weights(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        keywords = self.config.keywords
        unknown = sorted(set(keywords) - set(self.classes_), key=str)
        if unknown:
            raise UnknownLabelError(
                f"keywords given for labels {unknown} that are not in the training labels {self.classes_}"
            )
        vocab, V = self.counter_.vocabulary_, F.shape[1]
        return np.vstack(
            [self._weights_from_dict(keywords.get(c, {}), vocab, V) for c in self.classes_]
        )


__all__ = ["GivenKeywordSmoother"]
