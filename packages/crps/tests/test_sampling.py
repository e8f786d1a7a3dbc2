from __future__ import annotations

import numpy as np
import pytest

from crps_synth import (
    ConfigError,
    ContrastivePairSampler,
    Trajectory,
    select_anchor,
    stratify,
    successive_sample,
)


def T(length, ok, visits=1, q=0.5, tag=""):
    return Trajectory(
        [f"s{i}{tag}" for i in range(length)], ok, float(ok), visits, length, q, "1" if ok else "2"
    )


def test_stratify_and_anchor_tie_break():
    ts = [
        T(3, True, q=0.2, tag="a"),
        T(3, True, q=0.9, tag="b"),
        T(5, True),
        T(2, False),
        T(4, False),
    ]
    s = stratify(ts)
    assert [t.steps[0] for t in s["gold_positive"]] == ["s0a", "s0b"]
    assert [t.length for t in s["soft_negative"]] == [5]
    assert [t.length for t in s["hard_negative"]] == [2, 4]
    assert (
        select_anchor(s["gold_positive"] + s["soft_negative"]).steps[0] == "s0b"
    )  # max Q wins the tie
    assert stratify([T(2, False)])["gold_positive"] == []
    with pytest.raises(ValueError, match="at least one"):
        select_anchor([])


def _pools(n_hard, n_soft):
    hard = [T(2 + i, False, visits=i + 1, tag=f"h{i}") for i in range(n_hard)]
    soft = [T(9 + i, True, tag=f"s{i}") for i in range(n_soft)]
    return {"gold_positive": [T(1, True)], "hard_negative": hard, "soft_negative": soft}


@pytest.mark.parametrize(
    ("n_hard", "n_soft", "want"),
    [(20, 20, (7, 3)), (3, 20, (3, 7)), (20, 1, (9, 1)), (2, 1, (2, 1)), (0, 4, (0, 4))],
)
def test_split_shortfall_and_cap(n_hard, n_soft, want):
    sampler = ContrastivePairSampler(k=10, hard_ratio=0.7, seed=0)
    pairs = sampler.sample("p", _pools(n_hard, n_soft), T(1, True), problem_id="x")
    got = (
        sum(p.contrast_type == "hard" for p in pairs),
        sum(p.contrast_type == "soft" for p in pairs),
    )
    assert got == want
    assert len({id(p.negative) for p in pairs}) == len(pairs)  # without replacement


def test_first_draw_frequencies_fit_visit_counts():
    w = np.array([1, 2, 3, 4, 10], dtype=float)
    rng = np.random.default_rng(123)
    n = 10_000
    counts = np.bincount([successive_sample(w, 1, rng)[0] for _ in range(n)], minlength=5)
    expected = n * w / w.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 18.47  # df = 4, p = 0.001


def test_sampler_first_hard_draw_fits_visit_counts_across_problems():
    sampler = ContrastivePairSampler(k=1, hard_ratio=1.0, seed=7)
    pools = _pools(4, 0)  # visit counts 1, 2, 3, 4
    n = 4000
    firsts = [
        sampler.sample("p", pools, T(1, True), problem_id=f"id{i}")[0].negative.visit_count
        for i in range(n)
    ]
    counts = np.bincount(firsts, minlength=5)[1:]
    expected = n * np.arange(1, 5) / 10
    assert float(((counts - expected) ** 2 / expected).sum()) < 16.27  # df = 3, p = 0.001


def test_second_draw_matches_successive_sampling_probabilities():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    W = w.sum()
    exact = np.array(
        [sum(w[i] / W * w[j] / (W - w[i]) for i in range(4) if i != j) for j in range(4)]
    )
    assert exact.sum() == pytest.approx(1.0)
    rng = np.random.default_rng(5)
    n = 10_000
    draws = [successive_sample(w, 2, rng) for _ in range(n)]
    assert all(a != b for a, b in draws)
    counts = np.bincount([b for _, b in draws], minlength=4)
    expected = n * exact
    assert float(((counts - expected) ** 2 / expected).sum()) < 16.27
    # ordered pair (3, 2): 4/10 · 3/6
    pair_freq = sum(1 for a, b in draws if (a, b) == (3, 2)) / n
    assert pair_freq == pytest.approx(0.4 * 0.5, abs=0.015)


def test_zero_visits_uniform_and_zero_weights_last():
    rng = np.random.default_rng(0)
    counts = np.bincount(
        [successive_sample([0, 0, 0], 1, rng)[0] for _ in range(3000)], minlength=3
    )
    assert counts.min() > 850
    assert all(successive_sample([0, 5, 0, 1], 2, rng)[:2] in ([1, 3], [3, 1]) for _ in range(200))


def test_same_problem_same_pairs_regardless_of_order():
    s = ContrastivePairSampler(seed=3)
    a = s.sample("p", _pools(12, 5), T(1, True), problem_id="z")
    b = s.sample("p", _pools(12, 5), T(1, True), problem_id="z")
    assert [p.negative.steps for p in a] == [p.negative.steps for p in b]


@pytest.mark.parametrize("kw", [{"hard_ratio": 1.5}, {"hard_ratio": -0.1}, {"k": 0}])
def test_bad_sampler_config(kw):
    with pytest.raises(ConfigError):
        ContrastivePairSampler(**kw)
