"""Paired comparisons for the benches: the methods of one seed share the split, the training
groups and the initialisation, so they are compared seed by seed (and, for retrieval, query by
query), not through independent means ± std.

For each (baseline, method) pair: the per-seed deltas, win / tie / loss counts, the mean delta,
a paired t-test (``scipy.stats.ttest_rel``) and an exact two-sided sign test
(``scipy.stats.binomtest`` on wins vs losses; ties dropped). With 3 seeds the smallest possible
sign-test p is 0.25: 3/3 wins is a consistent direction, not significance. When per-query values
are stored (retrieval), the pooled (seed, query) pairs add a paired t-test and a Wilcoxon
signed-rank test over queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from papercore.retrieval import paired_compare


def _or(p: float | None, default: float) -> float:
    return default if p is None else p


def paired(base: Sequence[float], other: Sequence[float], tol: float = 1e-12) -> dict:
    """Paired statistics of ``other - base`` (same length, same order of seeds / queries), through
    :func:`papercore.retrieval.paired_compare` (one entry per seed)."""
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"paired samples need the same non-zero length, got {a.shape} and {b.shape}"
        )
    c = paired_compare(dict(enumerate(a.tolist())), dict(enumerate(b.tolist())), eps=tol)
    d = b - a
    return {
        "n": len(d),
        "deltas": d.tolist(),
        "mean_delta": float(d.mean()),
        "wins": c.wins,
        "ties": c.ties,
        "losses": c.losses,
        "t_p": _or(c.p_seed_ttest, float("nan") if len(d) < 2 else 1.0),
        "sign_p": _or(c.p_seed_sign, 1.0),
    }


def paired_queries(base: Sequence[float], other: Sequence[float]) -> dict:
    """Per-query paired tests over pooled (seed, query) pairs: t-test and Wilcoxon signed-rank
    (:func:`papercore.retrieval.paired_compare` with the pooled pairs as one seed's queries)."""
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    c = paired_compare(
        {"pooled": dict(enumerate(a.tolist()))}, {"pooled": dict(enumerate(b.tolist()))}
    )
    d = b - a
    return {
        "n": len(d),
        "mean_delta": float(d.mean()),
        "better": c.query_wins,
        "worse": c.query_losses,
        "t_p": _or(c.p_query_ttest, 1.0),
        "wilcoxon_p": _or(c.p_query_wilcoxon, 1.0),
    }


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_deltas(deltas: Sequence[float]) -> str:
    return " / ".join(f"{x:+.4f}" for x in deltas)


__all__ = ["fmt_deltas", "fmt_p", "paired", "paired_queries"]
