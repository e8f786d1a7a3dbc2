"""Best-of-N selection: pick one of N candidate responses with the path scorer or the E-GRM judge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from egrm_reward.errors import EGRMValueError, EmptyAnswersError


@dataclass
class BestOfNResult:
    """The chosen candidate's index and every candidate's score."""

    index: int
    scores: list[float]
    candidate: str


class BestOfNSelector:
    """Scores N candidates and returns the best.

    Args:
        scorer: a :class:`~egrm_reward.scorer.PathScorer` (scores ``prompt + candidate``), or
        grm: an :class:`~egrm_reward.pipeline.EfficientGRM`; each candidate's score is the judge's
            probability of the candidate's extracted answer (answer mode, one judge call per prompt).
    """

    def __init__(self, scorer: Any = None, grm: Any = None):
        if (scorer is None) == (grm is None):
            raise EGRMValueError("BestOfNSelector needs exactly one of scorer= or grm=")
        self.scorer, self.grm = scorer, grm

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        if not candidates:
            raise EmptyAnswersError("best-of-N needs at least one candidate")
        if self.scorer is not None:
            return [
                float(x) for x in self.scorer.score([prompt] * len(candidates), list(candidates))
            ]
        fn = self.grm.as_reward_fn(mode="answer")
        return fn([prompt] * len(candidates), list(candidates))

    def select(self, prompt: str, candidates: Sequence[str]) -> BestOfNResult:
        """The top-scored candidate (the first on ties)."""
        scores = self.score(prompt, candidates)
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return BestOfNResult(best, scores, candidates[best])
