"""Scorer metrics over groups of paths: best-of-N accuracy, within-group pairwise accuracy, Brier score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from egrm_reward.errors import GroupSizeError, ShapeMismatchError


def _groups(scores, targets, group_ids):
    s, q, g = (np.asarray(x, dtype=float) for x in (scores, targets, group_ids))
    if not (s.shape == q.shape == g.shape) or s.ndim != 1:
        raise ShapeMismatchError(
            f"scores, targets, group_ids must be 1-D of equal length, got {s.shape}, {q.shape}, {g.shape}"
        )
    out = []
    for gid in np.unique(g):
        idx = g == gid
        if idx.sum() < 2:
            raise GroupSizeError(f"group {gid} has {int(idx.sum())} path(s); expected >= 2")
        out.append((s[idx], q[idx]))
    return out


def best_of_n_accuracy(
    scores: Sequence[float], targets: Sequence[float], group_ids: Sequence[int]
) -> float:
    """Mean over groups of the target (e.g. correctness) of the top-scored path (first on ties)."""
    return float(np.mean([q[int(np.argmax(s))] for s, q in _groups(scores, targets, group_ids)]))


def pairwise_accuracy(
    scores: Sequence[float], targets: Sequence[float], group_ids: Sequence[int]
) -> float:
    """Share of within-group pairs with ``q_j > q_k`` that the scores order the same way (ties = 0.5)."""
    hits, n = 0.0, 0
    for s, q in _groups(scores, targets, group_ids):
        better = q[:, None] > q[None, :]
        d = s[:, None] - s[None, :]
        hits += float(((d > 0) + 0.5 * (d == 0))[better].sum())
        n += int(better.sum())
    return hits / n if n else float("nan")


def brier(scores: Sequence[float], targets: Sequence[float]) -> float:
    """``mean (σ(s) − q)²``."""
    s, q = np.asarray(scores, dtype=float), np.asarray(targets, dtype=float)
    return float(np.mean((1 / (1 + np.exp(-s)) - q) ** 2))
