"""GIC keeps a dormant hub that single-layer selection drops; pivot rule on constructed traces; divergences."""

import math

import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from structkv import FastKVPress, StructKVPress
from structkv.centrality import js_divergence, kl_divergence, topk_jaccard_distance, zscale
from structkv.pivot import PivotDetector, pivot_bounds
from structkv.presses.base import _Run
from structkv.presses.propagating import topk_protected

N, L, HUB, PIVOT = 120, 8, 50, 3


def _hand_built_indegree():
    """Per-layer in-degree (1, 2, N): token HUB is central at every layer except the pivot."""
    g = torch.Generator().manual_seed(0)
    layers = []
    for layer in range(L):
        s = torch.rand(1, 2, N, generator=g) * 0.1
        if layer == PIVOT:
            s[..., HUB] = 0.0
            s[..., 60:72] += 1.0  # the pivot layer's own (local) favourites
        else:
            s[..., HUB] += 1.0
        layers.append(s / s.sum(-1, keepdim=True))
    return layers


def _structkv(**kw):
    press = StructKVPress(
        compression_ratio=0.9, prefill_budget=0.6, window_size=4, n_sink=4, pivot=PIVOT, **kw
    )
    press.reset()
    press.begin(_Run(n=N, n_layers=L, batch=1))
    return press


def test_dormant_hub_is_kept_by_structkv_and_dropped_by_fastkv():
    scores = _hand_built_indegree()
    press = _structkv()
    fired = [press.step_layer(layer, scores[layer], 0.5) for layer in range(PIVOT + 1)]
    assert fired == [False] * PIVOT + [True]
    p_struct = press.select_propagation(PIVOT, L, N)
    assert HUB in p_struct[0].tolist()
    # KV: the blended σ keeps it wherever it is locally central; the global score keeps it even at the pivot,
    # the local-only ablation drops it there
    assert (press.kv_indices(scores[0], press.centrality.C) == HUB).any(dim=-1).all()
    for kv_score, kept in (("global", True), ("local", False)):
        ab = _structkv(kv_score=kv_score)
        for layer in range(PIVOT + 1):
            ab.step_layer(layer, scores[layer], 0.5)
        assert (
            bool((ab.kv_indices(scores[PIVOT], ab.centrality.C) == HUB).any(dim=-1).all()) is kept
        )

    fast = FastKVPress(
        compression_ratio=0.9,
        propagation_ratio=p_struct.shape[1] / N,
        window_size=4,
        tsp_layer=PIVOT,
    )
    fast.begin(_Run(n=N, n_layers=L, batch=1))
    p_fast = fast.select_propagation(scores[PIVOT])
    assert p_fast.shape == p_struct.shape
    assert HUB not in p_fast[0].tolist()


def _fed(**kw):
    """A StructKV press fed the hand-built in-degrees up to the pivot."""
    press = _structkv(**kw)
    press._run = _Run(n=N, n_layers=L, batch=1)
    scores = _hand_built_indegree()
    for layer in range(PIVOT + 1):
        press.step_layer(layer, scores[layer], 0.5)
    return press, scores


def test_no_gic_selects_with_the_pivot_layers_own_score_same_pivot_and_size():
    gic, scores = _fed()
    local, _ = _fed(use_gic=False)
    p_gic = gic.select_propagation(PIVOT, L, N)
    p_local = local.select_propagation(PIVOT, L, N)
    assert p_gic.shape == p_local.shape  # same |P|
    assert HUB in p_gic[0].tolist() and HUB not in p_local[0].tolist()
    # −GIC is exactly "top-K of ĉ_{l*}", the FastKV-style single-layer selection
    c_hat = scores[PIVOT].mean(1)
    want = topk_protected(c_hat, p_local.shape[1], 4, 4)
    assert torch.equal(p_local, want)
    # the hub term of the KV score uses ĉ_{l*} too
    idx = local.kv_indices(scores[0], local.selection_scores())
    sigma = zscale(scores[0]) + zscale(local._c_hat[PIVOT]).unsqueeze(1)
    assert torch.equal(idx, topk_protected(sigma, local._m, 4, 4))


def test_propagation_budget_arithmetic():
    press = _structkv()
    size, rho, violated = press.propagation_size(PIVOT, L, N)
    frac = (PIVOT + 1) / L
    assert rho == pytest.approx((0.6 - frac) / (1 - frac))
    assert size == round(rho * N) and not violated
    size, rho, violated = press.propagation_size(5, L, N)  # 6/8 > 0.6: clamp to ρ_m
    assert violated and rho == pytest.approx(0.1) and size == round(0.1 * N)


@pytest.mark.parametrize("weighting", ["uniform", "linear", "sharpness"])
def test_layer_weighting_changes_running_centrality(weighting):
    scores = _hand_built_indegree()
    press = _structkv(layer_weighting=weighting)
    for layer in range(2):
        press.step_layer(layer, scores[layer], 0.25 * (layer + 1))
    c0 = press.centrality.prev
    c1 = press.centrality.C - c0
    w = {"uniform": (1, 1), "linear": (1, 2), "sharpness": (0.75, 0.5)}[weighting]
    assert float(c0.sum()) == pytest.approx(w[0], rel=1e-5)
    assert float(c1.sum()) == pytest.approx(w[1], rel=1e-5)


def _dist(seed, n=50, sharp=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharp * torch.randn(1, n, generator=g), dim=-1)


def _run_detector(seq, l_min, l_max, metric="js", entropies=None, patience=2, tau=0.02):
    """Feed single-layer distributions ĉ_l (and their running sum C_l) to a detector."""
    det = PivotDetector(16, l_min, l_max, metric, tau=tau, patience=patience)
    c = torch.zeros_like(seq[0])
    for layer, p in enumerate(seq):
        c = c + p
        ent = 0.5 if entropies is None else entropies[layer]
        if det.step(layer, p, c, ent, k=5):
            return det.fired_at, det
    return None, det


def test_pivot_fires_after_patience_stable_layers():
    stable = _dist(99)
    seq = [_dist(i) for i in range(5)] + [stable * (1 + 1e-3 * i) for i in range(8)]
    fired, det = _run_detector(seq, l_min=2, l_max=10)
    # layer 5 still differs from layer 4; T_6 and T_7 are below τ → with patience 2 it fires at 7
    assert fired == 7 and det.reason == "stable"
    assert det.trace[6]["transition"] < 0.02 < det.trace[5]["transition"]
    assert det.trace[6]["T_js"] == det.trace[6]["transition"]


def test_pivot_falls_back_to_l_max_and_respects_l_min():
    changing = [_dist(i, sharp=3.0) for i in range(12)]
    fired, det = _run_detector(changing, l_min=2, l_max=7)
    assert fired == 7 and det.reason == "l_max"
    constant = [_dist(0)] * 12
    fired, det = _run_detector(constant, l_min=5, l_max=9)
    assert fired == 5 and det.reason == "stable"


def test_running_mean_drift_fires_at_l_min_whatever_the_layers_do():
    """The first draft's rule (JS of running centralities) shrinks like 1/(l+1)²: on layers that attend to
    unrelated tokens every time it still calls the structure stable by l_min; the single-layer JS does not."""
    changing = [_dist(i) for i in range(12)]
    old, det_old = _run_detector(changing, l_min=6, l_max=10, metric="js_running")
    new, det_new = _run_detector(changing, l_min=6, l_max=10, metric="js")
    assert old == 6 and det_old.reason == "stable"
    assert new == 10 and det_new.reason == "l_max"
    drift = [row["T_js_running"] for row in det_new.trace[1:]]
    assert drift[-1] < drift[0] / 5  # the running drift decays even though every layer changes
    assert min(row["T_js"] for row in det_new.trace[1:]) > 0.1


def test_topk_jaccard_counts_changes_of_the_selection_at_budget_k():
    a = torch.tensor([[0.0, 5, 4, 3, 0, 0]])
    det = PivotDetector(8, 1, 5, "topk_jaccard", tau=0.3, patience=1)
    det.step(0, a / a.sum(), a, 0.5, k=3)
    b = torch.tensor([[0.0, 0, 0, 3, 6, 5]])  # C_1 = a + b: top-3 {1, 4, 5} vs {1, 2, 3}
    det.step(1, b / b.sum(), a + b, 0.5, k=3)
    assert det.trace[1]["T_topk_jaccard"] == pytest.approx(1 - 1 / 5)
    assert not det.trace[1]["stable"]


def test_entropy_metric_fires_after_largest_drop():
    ent = [0.9, 0.9, 0.5, 0.45, 0.44, 0.43, 0.42, 0.41, 0.4]
    fired, _ = _run_detector(
        [_dist(i) for i in range(9)], 1, 8, metric="entropy", entropies=ent, patience=1
    )
    assert fired == 3  # drop 0.4 at layer 2, then T_3 = 0.05 < 0.2


def test_pivot_histogram_and_calibrate_tau():
    from structkv.pivot import calibrate_tau, format_histogram, pivot_histogram

    stats = [{"pivot_layer": 2}, {"pivot_layer": 4}, {"pivot_layer": 2}, {"pivot_layer": None}]
    assert pivot_histogram(stats) == {2: 2, 4: 1, None: 1}
    assert pivot_histogram([3, 3, 5], n_layers=8) == {0: 0, 1: 0, 2: 0, 3: 2, 4: 0, 5: 1, 6: 0}
    assert format_histogram(pivot_histogram([3, 3, 5])) == "l3:2 l5:1"
    with pytest.raises(TypeError, match="PrefillResult"):
        pivot_histogram(["2"])
    assert calibrate_tau([0.1, 0.2, 0.3, math.inf]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="finite"):
        calibrate_tau([math.inf])


def test_pivot_bounds_validation():
    assert pivot_bounds(32, (0.25, 0.5)) == (8, 16)
    assert pivot_bounds(8, (0.25, 0.5)) == (2, 4)
    with pytest.raises(ValueError, match="l_min"):
        pivot_bounds(2, (0.25, 0.5))


def test_divergences_against_scipy():
    for seed in range(5):
        p, q = _dist(seed)[0], _dist(seed + 10)[0]
        js = float(js_divergence(p, q))
        assert js == pytest.approx(jensenshannon(p.numpy(), q.numpy()) ** 2, rel=1e-4)
        assert 0 <= js <= math.log(2)
        kl = float(kl_divergence(p, q, eps=0.0))
        assert kl == pytest.approx(scipy_entropy(p.numpy(), q.numpy()), rel=1e-4)
    a = torch.tensor([[5.0, 4, 3, 2, 1]])
    b = torch.tensor([[5.0, 4, 0, 0, 3]])
    assert float(topk_jaccard_distance(a, b, 3)) == pytest.approx(1 - 2 / 4)
