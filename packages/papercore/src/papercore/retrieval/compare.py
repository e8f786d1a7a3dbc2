"""Paired comparison of two retrieval systems run on the same seeds (same split, data and init).

Seeds are paired: seed ``s`` of system A and seed ``s`` of system B share the training data, the
evaluation queries and the initialisation, so the question "is B better than A?" is answered by
the per-seed differences B − A, not by comparing two independent standard deviations. Reported:

* per-seed deltas of the mean metric and the win count (seeds where B > A, ties apart);
* over seeds: a paired t-test of the per-seed means (``scipy.stats.ttest_rel``; weak with 3 seeds);
* over (seed, query) pairs, when per-query values are given: a paired t-test, the Wilcoxon
  signed-rank test and an exact two-sided sign test (``scipy.stats.binomtest`` on wins vs losses).

``scipy`` is imported when needed; without it the tests are reported as ``None``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from papercore.errors import MalformedInputError

PerQuery = Mapping[str, float]
"""One metric per query id."""


@dataclass
class PairedComparison:
    """B − A over paired seeds (see the module docstring). ``p_*`` are two-sided p-values."""

    metric: str
    seeds: list[str]
    mean_a: float
    mean_b: float
    deltas: dict[str, float]
    wins: int
    losses: int
    ties: int
    p_seed_ttest: float | None
    p_seed_sign: float | None = None
    n_pairs: int = 0
    query_wins: int = 0
    query_losses: int = 0
    p_query_ttest: float | None = None
    p_query_wilcoxon: float | None = None
    p_query_sign: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_delta(self) -> float:
        return self.mean_b - self.mean_a

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mean_delta": self.mean_delta}


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy ships with the retrieval stack
        return None
    return stats


def _mean(value: float | PerQuery) -> float:
    return statistics.fmean(value.values()) if isinstance(value, Mapping) else float(value)


def _p(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def paired_compare(
    a: Mapping[str, float | PerQuery],
    b: Mapping[str, float | PerQuery],
    metric: str = "",
    *,
    eps: float = 1e-12,
) -> PairedComparison:
    """Compare system B with system A over the seeds both have.

    Args:
        a, b: ``{seed: value}`` with either the seed's mean metric (a float) or its per-query
            values ``{qid: value}`` (then the seed's mean is their mean, and the per-query tests
            run over every (seed, query) pair both systems have).
        metric: the metric's name, for the report.
        eps: differences smaller than this count as ties.

    Raises :class:`MalformedInputError` when the systems share no seed, or when per-query values
    of a seed do not cover the same queries in both systems.
    """
    seeds = [s for s in a if s in b]
    if not seeds:
        raise MalformedInputError(f"no common seed to pair: A has {sorted(a)}, B has {sorted(b)}")
    per_query = all(isinstance(a[s], Mapping) and isinstance(b[s], Mapping) for s in seeds)
    mean_a: dict[str, float] = {}
    mean_b: dict[str, float] = {}
    diffs: list[float] = []
    xa: list[float] = []
    xb: list[float] = []
    for s in seeds:
        va, vb = a[s], b[s]
        if per_query:
            assert isinstance(va, Mapping) and isinstance(vb, Mapping)
            if set(va) != set(vb):
                raise MalformedInputError(
                    f"seed {s}: per-query values cover different queries "
                    f"({len(va)} vs {len(vb)}; {len(set(va) ^ set(vb))} differ)"
                )
            mean_a[s], mean_b[s] = statistics.fmean(va.values()), statistics.fmean(vb.values())
            for q in va:
                xa.append(float(va[q]))
                xb.append(float(vb[q]))
                diffs.append(float(vb[q]) - float(va[q]))
        else:
            mean_a[s], mean_b[s] = _mean(va), _mean(vb)
    deltas = {s: mean_b[s] - mean_a[s] for s in seeds}
    wins = sum(d > eps for d in deltas.values())
    losses = sum(d < -eps for d in deltas.values())
    stats = _scipy_stats()
    p_seed = None
    if stats is not None and len(seeds) > 1 and any(abs(d) > eps for d in deltas.values()):
        p_seed = _p(stats.ttest_rel([mean_b[s] for s in seeds], [mean_a[s] for s in seeds]).pvalue)
    out = PairedComparison(
        metric=metric,
        seeds=list(seeds),
        mean_a=statistics.fmean(mean_a.values()),
        mean_b=statistics.fmean(mean_b.values()),
        deltas=deltas,
        wins=wins,
        losses=losses,
        ties=len(seeds) - wins - losses,
        p_seed_ttest=p_seed,
    )
    if (
        stats is not None and wins + losses > 0
    ):  # exact two-sided sign test over seeds, ties dropped
        out.p_seed_sign = _p(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    if per_query:
        out.n_pairs = len(diffs)
        out.query_wins = sum(d > eps for d in diffs)
        out.query_losses = sum(d < -eps for d in diffs)
        if stats is not None and out.query_wins + out.query_losses > 0:
            out.p_query_ttest = _p(stats.ttest_rel(xb, xa).pvalue)
            nonzero = [d for d in diffs if abs(d) > eps]
            out.p_query_wilcoxon = _p(stats.wilcoxon(nonzero).pvalue)
            out.p_query_sign = _p(
                stats.binomtest(out.query_wins, out.query_wins + out.query_losses, 0.5).pvalue
            )
    return out
