"""Compute reduction, memory budget, no-op equivalence and stats on tiny Llama / Qwen2 / Mistral."""

import pytest
import torch

from structkv import FastKVPress, GemFilterPress, StructKVPress, prefill
from structkv.registry import make_press

ARCHS = ["llama", "qwen2", "mistral"]


def _record_lengths(model):
    seen = {}
    handles = [
        layer.self_attn.register_forward_hook(
            lambda m, a, kw, out, i=i: seen.__setitem__(i, kw["hidden_states"].shape[1]),
            with_kwargs=True,
        )
        for i, layer in enumerate(model.model.layers)
    ]
    return seen, handles


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_structkv_hidden_length_per_layer_and_cache_budget(make_model, context_ids, arch, impl):
    model = make_model(arch, impl)
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    seen, handles = _record_lengths(model)
    try:
        res = prefill(model, context_ids, press)
    finally:
        for h in handles:
            h.remove()
    n, L = context_ids.shape[1], len(model.model.layers)
    piv = res.pivot_layer
    assert piv is not None and 2 <= piv <= 4
    p_size = res.stats["propagated_tokens"]
    assert p_size < n
    assert [seen[i] for i in range(L)] == [n] * (piv + 1) + [p_size] * (L - piv - 1)
    m = round(0.2 * n)
    assert res.cache_lengths == [m] * L
    assert all(model.model.layers[0].self_attn is not None for _ in range(1))
    cost = res.stats["prefill_cost"]
    assert cost == pytest.approx(((piv + 1) * n + (L - piv - 1) * p_size) / (L * n))
    assert abs(cost - 0.6) <= 1.0 / n + 1e-9 or res.stats["budget_violated"]
    assert res.stats["kv_fraction"] == pytest.approx(m / n)
    assert res.stats["kv_bytes_after"] < res.stats["kv_bytes_before"]


@pytest.mark.parametrize(
    "method,expected_cost",
    [("snapkv", 1.0), ("streaming_llm", 1.0), ("fastkv", None), ("gemfilter", None)],
)
def test_every_method_keeps_the_memory_budget(make_model, context_ids, method, expected_cost):
    model = make_model("llama", "sdpa")
    press = make_press(method, 0.25, window_size=8)
    res = prefill(model, context_ids, press)
    n, L = context_ids.shape[1], 8
    assert res.cache_lengths == [round(0.25 * n)] * L
    if expected_cost is not None:
        assert res.stats["prefill_cost"] == expected_cost
    else:
        assert res.stats["prefill_cost"] < 1.0


def test_fastkv_pivot_fixed_and_gemfilter_cost(make_model, context_ids):
    model = make_model("llama", "sdpa")
    n = context_ids.shape[1]
    res = prefill(model, context_ids, FastKVPress(compression_ratio=0.75, propagation_ratio=0.25))
    assert res.pivot_layer == int(0.47 * 8)
    assert res.stats["tokens_per_layer"] == [n] * 4 + [40] * 4
    g = prefill(model, context_ids, GemFilterPress(compression_ratio=0.75, filter_layer=3))
    assert g.stats["prefill_cost"] == pytest.approx((4 * n + 8 * 40) / (8 * n))
    assert g.context_length == 40  # re-indexed positions


def test_pyramidkv_budgets_average_to_m(make_model, context_ids):
    model = make_model("llama", "sdpa")
    n = context_ids.shape[1]
    # β = 2 makes the kvpress pyramid feasible at N = 160 (min = K/β = 20 ≥ window 8)
    res = prefill(model, context_ids, make_press("pyramidkv", 0.25, window_size=8, beta=2))
    lens = res.cache_lengths
    assert lens == sorted(lens, reverse=True) and lens[0] > lens[-1]
    assert res.stats["pyramid"] is True
    assert sum(lens) / len(lens) == pytest.approx(0.25 * n, abs=1)
    # β = 20 at this length is infeasible: kvpress (and this press) fall back to SnapKV's uniform budget
    flat = prefill(model, context_ids, make_press("pyramidkv", 0.25, window_size=8))
    assert flat.cache_lengths == [40] * 8 and flat.stats["pyramid"] is False


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_noop_press_equals_unpressed_model(make_model, context_ids, impl):
    model = make_model("llama", impl)
    full = prefill(model, context_ids)
    res = prefill(
        model, context_ids, StructKVPress(compression_ratio=0.0, prefill_budget=1.0, window_size=8)
    )
    assert res.stats["tokens_per_layer"] == [context_ids.shape[1]] * 8
    torch.testing.assert_close(res.last_logits, full.last_logits)
    for a, b in zip(res.cache.layers, full.cache.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys)


def test_context_manager_pattern_with_plain_forward(make_model, context_ids):
    model = make_model("qwen2", "sdpa")
    press = StructKVPress(compression_ratio=0.9, prefill_budget=0.6, window_size=8, n_sink=4)
    ids = torch.randint(3, 500, (2, 200), generator=torch.Generator().manual_seed(1))
    with press(model):
        out = model(ids)
    stats = press.last_stats
    assert out.logits.shape[1] == stats["propagated_tokens"] < 200
    assert stats["cache_len_per_layer"] == [20] * 8
    assert not any(h for layer in model.model.layers for h in layer._forward_pre_hooks.values())


def test_original_positions_kept_in_post_pivot_layers(make_model, context_ids):
    model = make_model("llama", "sdpa")
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    seen = {}
    h = model.model.layers[7].self_attn.register_forward_pre_hook(
        lambda m, a, kw: seen.__setitem__("pos", kw["position_ids"].clone()), with_kwargs=True
    )
    try:
        prefill(model, context_ids, press)
    finally:
        h.remove()
    kept = press._keep
    assert torch.equal(seen["pos"], kept)
    assert kept[0, -1].item() == context_ids.shape[1] - 1
