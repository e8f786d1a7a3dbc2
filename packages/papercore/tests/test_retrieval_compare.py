"""paired_compare: per-seed deltas, win counts and paired tests, checked by hand."""

from __future__ import annotations

import pytest

from papercore.errors import MalformedInputError
from papercore.retrieval import paired_compare

stats = pytest.importorskip("scipy.stats")


def test_seed_means_give_deltas_wins_and_a_paired_t_test():
    a = {"0": 0.60, "1": 0.62, "2": 0.64}
    b = {"0": 0.63, "1": 0.64, "2": 0.63, "9": 1.0}  # seed 9 has no pair: ignored
    c = paired_compare(a, b, "MRR@10")
    assert c.seeds == ["0", "1", "2"]
    assert c.deltas == pytest.approx({"0": 0.03, "1": 0.02, "2": -0.01})
    assert (c.wins, c.losses, c.ties) == (2, 1, 0)
    assert c.mean_delta == pytest.approx(0.04 / 3)
    # t = mean(d) / (sd(d) / √3) with d = (.03, .02, −.01), df = 2
    d = [0.03, 0.02, -0.01]
    m = sum(d) / 3
    sd = (sum((x - m) ** 2 for x in d) / 2) ** 0.5
    t = m / (sd / 3**0.5)
    assert c.p_seed_ttest == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert c.n_pairs == 0 and c.p_query_sign is None
    # exact two-sided sign test over seeds: 2 wins, 1 loss → P = 1 (and 3/3 → 0.25, the floor at 3 seeds)
    assert c.p_seed_sign == pytest.approx(1.0)
    assert paired_compare(a, {"0": 0.7, "1": 0.7, "2": 0.7}).p_seed_sign == pytest.approx(0.25)
    assert paired_compare(a, a).p_seed_sign is None  # all ties: no test


def test_per_query_values_pool_seed_query_pairs():
    a = {"0": {"q1": 0.0, "q2": 1.0, "q3": 0.5}, "1": {"q1": 0.5, "q2": 0.5, "q3": 0.5}}
    b = {"0": {"q1": 1.0, "q2": 1.0, "q3": 1.0}, "1": {"q1": 1.0, "q2": 0.25, "q3": 1.0}}
    c = paired_compare(a, b, "RR@10")
    assert (c.wins, c.losses) == (2, 0)
    assert c.deltas["0"] == pytest.approx(0.5)
    assert (c.n_pairs, c.query_wins, c.query_losses) == (6, 4, 1)  # one tie (q2, seed 0)
    assert c.p_query_sign == pytest.approx(stats.binomtest(4, 5, 0.5).pvalue)  # = 0.375
    assert c.p_query_sign == pytest.approx(0.375)
    assert c.p_query_wilcoxon is not None and c.p_query_ttest is not None
    assert c.to_dict()["mean_delta"] == pytest.approx(c.mean_b - c.mean_a)


def test_unpaired_inputs_raise():
    with pytest.raises(MalformedInputError, match="no common seed"):
        paired_compare({"0": 0.1}, {"1": 0.2})
    with pytest.raises(MalformedInputError, match="seed 0: per-query values cover different"):
        paired_compare({"0": {"q1": 1.0}}, {"0": {"q2": 1.0}})
