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
from scipy import stats


def paired(base: Sequence[float], other: Sequence[float], tol: float = 1e-12) -> dict:
    """Paired statistics of ``other - base`` (same length, same order of seeds / queries)."""
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"paired samples need the same non-zero length, got {a.shape} and {b.shape}"
        )
    d = b - a
    wins, losses = int((d > tol).sum()), int((d < -tol).sum())
    ties = len(d) - wins - losses
    if len(d) >= 2 and np.std(d) > tol:
        t_p = float(stats.ttest_rel(b, a).pvalue)
    else:
        t_p = float("nan") if len(d) < 2 else 1.0
    sign_p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    return {
        "n": len(d),
        "deltas": d.tolist(),
        "mean_delta": float(d.mean()),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "t_p": t_p,
        "sign_p": sign_p,
    }


def paired_queries(base: Sequence[float], other: Sequence[float]) -> dict:
    """Per-query paired tests over pooled (seed, query) pairs: t-test and Wilcoxon signed-rank."""
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    d = b - a
    out = {"n": len(d), "mean_delta": float(d.mean()), "better": int((d > 0).sum())}
    out["worse"] = int((d < 0).sum())
    nz = d[d != 0]
    out["t_p"] = float(stats.ttest_rel(b, a).pvalue) if np.std(d) > 0 else 1.0
    out["wilcoxon_p"] = float(stats.wilcoxon(nz).pvalue) if len(nz) >= 1 else 1.0
    return out


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_deltas(deltas: Sequence[float]) -> str:
    return " / ".join(f"{x:+.4f}" for x in deltas)


__all__ = ["fmt_deltas", "fmt_p", "paired", "paired_queries"]
