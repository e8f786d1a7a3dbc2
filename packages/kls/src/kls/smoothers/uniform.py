"""Classic label smoothing (Szegedy et al. 2016) as a soft-label column: the baseline of KLS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kls._checks import check_range
from kls._math import mix, one_hot
from kls.smoothers.base import LabelSmoother, as_texts


class UniformLabelSmoother(LabelSmoother):
    """Classic label smoothing: ``(1 − ε)·y + ε/C``.

    The baseline in the same shape as :class:`~kls.KeywordLabelSmoother`; equals KLS's mixture with
    a uniform q, and training on it with :func:`kls.losses.soft_cross_entropy` equals
    ``torch.nn.functional.cross_entropy(..., label_smoothing=ε)``.
    """

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = check_range("epsilon", epsilon, low=0.0, high=1.0, high_open=True)

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> UniformLabelSmoother:
        texts = as_texts(texts)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        self._fit_labels(labels)
        self._remember_fit_texts(texts)
        return self

    def transform(self, texts: Sequence[str], labels: Sequence[Any] | None = None) -> np.ndarray:
        if labels is None:
            raise ValueError("UniformLabelSmoother.transform needs the hard labels")
        y = self.label_index(labels)
        L = len(self.classes_)
        return mix(one_hot(y, L), np.full((len(y), L), 1.0 / L), self.epsilon)

    def _config_dict(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}

    @classmethod
    def _from_saved(cls, doc: Mapping[str, Any], path: Path, **kwargs: Any) -> UniformLabelSmoother:
        if kwargs:
            raise TypeError(
                f"UniformLabelSmoother.from_pretrained takes no options, got {sorted(kwargs)}"
            )
        return cls(**doc["config"])


__all__ = ["UniformLabelSmoother"]
