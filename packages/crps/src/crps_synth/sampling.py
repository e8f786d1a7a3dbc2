"""Trajectory stratification and distribution-aware contrastive pair sampling (spec 2.2–2.3,
released ``crps/trajectory``).

* :func:`stratify`: ``gold_positive`` = correct trajectories of minimal length, ``soft_negative`` =
  correct but longer, ``hard_negative`` = incorrect.
* :func:`select_anchor`: τ+ = argmin over correct of ``(length, −max_q_value)``.
* :class:`ContrastivePairSampler`: K pairs, ``round(K · hard_ratio)`` hard + the rest soft; hard
  negatives by **successive sampling without replacement with probability ∝ visit count**
  (:func:`successive_sample`; uniform when the remaining counts are all 0), soft negatives uniform
  without replacement; a shortfall in one pool is filled from the other; total ≤ K.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from crps_synth.errors import ConfigError
from crps_synth.trajectory import ContrastivePair, Trajectory

logger = logging.getLogger(__name__)

STRATA = ("gold_positive", "soft_negative", "hard_negative")


def stratify(trajectories: Sequence[Trajectory]) -> dict[str, list[Trajectory]]:
    """Split trajectories into ``gold_positive`` / ``soft_negative`` / ``hard_negative``."""
    correct = [t for t in trajectories if t.is_correct]
    hard = [t for t in trajectories if not t.is_correct]
    if not correct:
        return {"gold_positive": [], "soft_negative": [], "hard_negative": hard}
    shortest = min(t.length for t in correct)
    return {
        "gold_positive": [t for t in correct if t.length == shortest],
        "soft_negative": [t for t in correct if t.length > shortest],
        "hard_negative": hard,
    }


def select_anchor(correct: Sequence[Trajectory]) -> Trajectory:
    """τ+: the shortest correct trajectory, ties broken by the highest ``max_q_value`` (then first)."""
    if not correct:
        raise ValueError("select_anchor needs at least one correct trajectory, got none")
    bad = [t for t in correct if not t.is_correct]
    if bad:
        raise ValueError(
            f"select_anchor expects correct trajectories; got {len(bad)} incorrect ones"
        )
    return min(correct, key=lambda t: (t.length, -t.max_q_value))


def successive_sample(weights: Sequence[float], m: int, rng: np.random.Generator) -> list[int]:
    """Draw ``m`` distinct indices one after another, each with probability ∝ its weight among the
    indices not drawn yet (uniform over them when their weights sum to 0).

    P(first = i) = w_i / Σw; P(second = j | first = i) = w_j / (Σw − w_i); ….
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError(
            f"weights must be a 1-D list of finite numbers >= 0, got {list(weights)!r}"
        )
    if not 0 <= m <= len(w):
        raise ValueError(f"cannot draw {m} distinct items from {len(w)}")
    remaining = list(range(len(w)))
    out: list[int] = []
    for _ in range(m):
        ww = w[remaining]
        total = ww.sum()
        if total <= 0:
            pick = int(rng.integers(len(remaining)))
        else:
            cdf = np.cumsum(ww / total)
            pick = int(min(np.searchsorted(cdf, rng.random(), side="right"), len(remaining) - 1))
            while ww[pick] == 0:  # float edge: never pick a zero-weight item while others remain
                pick -= 1
        out.append(remaining.pop(pick))
    return out


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class ContrastivePairSampler:
    """K contrast pairs per problem (see the module doc).

    Args:
        k: pairs per problem (≥ 1).
        hard_ratio: share of hard negatives among the K, in [0, 1].
        seed: base seed; each problem's draws are seeded by ``(seed, problem_id)``, so a problem gets
            the same pairs whatever the order or resumption of a run. ``None`` = fresh entropy.
    """

    def __init__(self, k: int = 10, hard_ratio: float = 0.7, seed: int | None = None):
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        if not 0.0 <= hard_ratio <= 1.0:
            raise ConfigError(f"hard_ratio must be in [0, 1], got {hard_ratio}")
        self.k = k
        self.hard_ratio = hard_ratio
        self.seed = seed

    def counts(self, n_hard: int, n_soft: int) -> tuple[int, int]:
        """(hard, soft) pairs drawn from pools of these sizes: targets, then shortfall filled."""
        t_hard = round(self.k * self.hard_ratio)
        t_soft = self.k - t_hard
        h, s = min(t_hard, n_hard), min(t_soft, n_soft)
        if h < t_hard:
            s = min(n_soft, self.k - h)
        elif s < t_soft:
            h = min(n_hard, self.k - s)
        return h, s

    def rng_for(self, key: str) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, _stable_int(key)])

    def sample(
        self,
        problem: str,
        stratified: dict[str, list[Trajectory]],
        anchor: Trajectory,
        *,
        problem_id: str = "",
        gold: str = "",
    ) -> list[ContrastivePair]:
        """Pairs (anchor, negative): hard ones first (in draw order), then soft ones."""
        missing = [s for s in ("soft_negative", "hard_negative") if s not in stratified]
        if missing:
            raise ValueError(f"stratified must have keys {list(STRATA)}; missing {missing}")
        hard, soft = stratified["hard_negative"], stratified["soft_negative"]
        n_h, n_s = self.counts(len(hard), len(soft))
        rng = self.rng_for(problem_id or problem)
        hard_idx = successive_sample([t.visit_count for t in hard], n_h, rng)
        soft_idx = [int(i) for i in rng.permutation(len(soft))[:n_s]]
        pairs = [
            ContrastivePair(problem, anchor, hard[i], "hard", problem_id, gold) for i in hard_idx
        ]
        pairs += [
            ContrastivePair(problem, anchor, soft[i], "soft", problem_id, gold) for i in soft_idx
        ]
        return pairs
