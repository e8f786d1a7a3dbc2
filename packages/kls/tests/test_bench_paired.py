"""bench/paired.py: the paired statistics the bench scripts print in the README tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "kls_bench_paired", Path(__file__).resolve().parents[1] / "bench" / "paired.py"
)
paired_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_mod)


def test_paired_counts_deltas_and_tests():
    from scipy import stats

    base, other = [0.90, 0.80, 0.70], [0.88, 0.78, 0.69]
    r = paired_mod.paired(base, other)
    assert r["deltas"] == pytest.approx([-0.02, -0.02, -0.01])
    assert (r["wins"], r["ties"], r["losses"]) == (0, 0, 3)
    assert r["sign_p"] == pytest.approx(0.25)  # the floor at 3 seeds
    assert r["t_p"] == pytest.approx(stats.ttest_rel(other, base).pvalue)
    # independent stds would hide this: the seeds differ by 0.1, the deltas by 0.01
    tie = paired_mod.paired([0.5, 0.6], [0.5, 0.7])
    assert (tie["wins"], tie["ties"], tie["losses"]) == (1, 1, 0) and tie["sign_p"] == 1.0
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_mod.paired([0.1], [0.1, 0.2])


def test_paired_queries_uses_wilcoxon_over_pooled_queries():
    from scipy import stats

    a = [0.0, 0.5, 1.0, 0.2, 0.3, 0.9, 0.1, 0.4]
    b = [0.1, 0.5, 1.0, 0.5, 0.6, 1.0, 0.3, 0.6]
    r = paired_mod.paired_queries(a, b)
    assert (r["better"], r["worse"], r["n"]) == (6, 0, 8)
    d = [y - x for x, y in zip(a, b, strict=True) if y != x]
    assert r["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue)
