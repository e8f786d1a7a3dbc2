"""Baselines match their definitions, checked against the eager model's own attention weights."""

import pytest
import torch

from structkv import (
    FastKVPress,
    GemFilterPress,
    PyramidKVPress,
    SnapKVPress,
    StreamingLLMPress,
    prefill,
)
from structkv.centrality import avg_pool


@pytest.fixture(scope="module")
def eager_run(make_model, context_ids):
    model = make_model("llama", "eager")
    with torch.no_grad():
        out = model(context_ids, output_attentions=True)
    full = prefill(model, context_ids)
    return model, out.attentions, full


def _window_indeg(attn, w, kernel, g=2):
    """(B, H_kv, n): mean over the last w rows and the G heads of each group, pooled."""
    a = attn[:, :, -w:, :].float().mean(dim=2)  # (B, H, n)
    b, h, n = a.shape
    return avg_pool(a.view(b, h // g, g, n).mean(dim=2), kernel)


def _recorded_window_scores(model, ids, press):
    """The press's window scores per layer, recomputed inside attention hooks during a full prefill."""
    from structkv._compat import cache_from_kwargs, get_layer_kv

    got = {}

    def hook(module, args, kwargs, output):
        keys, _ = get_layer_kv(cache_from_kwargs(kwargs), module.layer_idx)
        got[module.layer_idx] = press.window_scores(module, kwargs["hidden_states"], keys, kwargs)[
            0
        ]

    hs = [
        layer.self_attn.register_forward_hook(hook, with_kwargs=True)
        for layer in model.model.layers
    ]
    try:
        prefill(model, ids)
    finally:
        for h in hs:
            h.remove()
    return got


def test_window_scores_recomputed_from_q_proj_equal_eager_attention(eager_run, context_ids):
    model, attns, _ = eager_run
    got = _recorded_window_scores(
        model, context_ids, SnapKVPress(compression_ratio=0.5, window_size=8)
    )
    for layer in range(8):
        torch.testing.assert_close(
            got[layer], _window_indeg(attns[layer], 8, 7), atol=1e-6, rtol=1e-4
        )


def test_snapkv_keeps_top_scores_per_kv_head(eager_run, context_ids):
    model, attns, full = eager_run
    n, m = context_ids.shape[1], 40
    res = prefill(
        model, context_ids, SnapKVPress(compression_ratio=0.75, window_size=8, kernel_size=7)
    )
    for layer in (0, 5):
        s = _window_indeg(attns[layer], 8, 7)
        s[..., n - 8 :] = s.max() + 1
        idx = s.topk(m, dim=-1).indices.sort(-1).values
        expect = full.cache.layers[layer].keys.gather(2, idx[..., None].expand(-1, -1, -1, 16))
        torch.testing.assert_close(res.cache.layers[layer].keys, expect)


def _kvpress_snapkv_from_attentions(attn, w, kernel, g=2):
    """kvpress SnapKVPress.score on eager attentions (its ``attentions is not None`` path), restated:
    the window rows' attention to the n − w context keys, mean over rows, pooled over the context keys
    only, mean over each KV group's query heads, window padded with the max."""
    a = attn[..., -w:, :-w].float().mean(dim=-2)  # (B, H, n − w)
    a = torch.nn.functional.avg_pool1d(a, kernel_size=kernel, padding=kernel // 2, stride=1)
    b, h, m = a.shape
    a = a.view(b, h // g, g, m).mean(dim=2)
    return torch.nn.functional.pad(a, (0, w), value=a.max().item())


@pytest.mark.parametrize("ratio,window,kernel", [(0.75, 8, 7), (0.5, 16, 5), (0.8, 4, 3)])
def test_snapkv_cache_equals_kvpress_on_eager_attentions(
    eager_run, context_ids, ratio, window, kernel
):
    model, attns, full = eager_run
    n = context_ids.shape[1]
    press = SnapKVPress(compression_ratio=ratio, window_size=window, kernel_size=kernel)
    res = prefill(model, context_ids, press)
    m = press.n_kept(n)
    for layer in range(8):
        s = _kvpress_snapkv_from_attentions(attns[layer], window, kernel)
        idx = s.topk(m, dim=-1).indices.sort(-1).values
        assert torch.equal(res.kept_indices[layer], idx), layer
        expect = full.cache.layers[layer].keys.gather(2, idx[..., None].expand(-1, -1, -1, 16))
        torch.testing.assert_close(res.cache.layers[layer].keys, expect)


def test_streaming_llm_keeps_sinks_and_recent(eager_run, context_ids):
    model, _, full = eager_run
    n = context_ids.shape[1]
    res = prefill(model, context_ids, StreamingLLMPress(compression_ratio=0.75, n_sink=4))
    k_full = full.cache.layers[3].keys
    expect = torch.cat([k_full[:, :, :4], k_full[:, :, n - 36 :]], dim=2)
    torch.testing.assert_close(res.cache.layers[3].keys, expect)


def test_gemfilter_selects_by_last_query_row_at_filter_layer(eager_run, context_ids):
    model, attns, _ = eager_run
    k = 40
    res = prefill(model, context_ids, GemFilterPress(compression_ratio=0.75, filter_layer=3))
    score = attns[3][0, :, -1, :].float().mean(0)
    score[-1] = float("inf")
    expect = score.topk(k).indices.sort().values
    assert torch.equal(res.kept_indices[-1][0], expect)
    # pass 2 is a plain prefill of the selected ids at positions 0..k-1
    ref = prefill(model, context_ids[:, expect])
    torch.testing.assert_close(res.last_logits, ref.last_logits)
    assert res.cache_lengths == [k] * 8 and res.context_length == k


def test_fastkv_propagates_top_tokens_of_tsp_layer(eager_run, context_ids):
    model, attns, _ = eager_run
    n = context_ids.shape[1]
    press = FastKVPress(compression_ratio=0.75, propagation_ratio=0.3, tsp_layer=3, window_size=8)
    prefill(model, context_ids, press)
    s = _window_indeg(attns[3], 8, 7).mean(1)[0]
    s[n - 8 :] = float("inf")
    expect = s.topk(round(0.3 * n)).indices.sort().values
    assert torch.equal(press._keep[0], expect)


def _kvpress_layer_budget(layer_idx, num_layers, q_len, compression_ratio, window_size, beta):
    """kvpress ``PyramidKVPress.get_layer_budget`` (NVIDIA/kvpress, kvpress/presses/pyramidkv_press.py), restated."""
    max_capacity_prompt = window_size + q_len * (1 - compression_ratio)
    min_num = (max_capacity_prompt - window_size) / beta
    max_num = (max_capacity_prompt - window_size) * 2 - min_num
    if max_num >= q_len - window_size:
        max_num = q_len - window_size
        min_num = (max_capacity_prompt - window_size) * 2 - max_num
    if not (q_len >= max_num >= min_num >= window_size):
        return round(q_len * (1 - compression_ratio))
    steps = (max_num - min_num) / (num_layers - 1)
    return round(max_num - layer_idx * steps)


@pytest.mark.parametrize("beta", [1, 2, 5, 20])
def test_pyramidkv_budgets_equal_kvpress_get_layer_budget_on_a_grid(beta):
    from structkv.presses.pyramidkv import pyramid_budget

    pyramids = fallbacks = 0
    for n in (17, 64, 160, 1000, 4096, 32_768):
        for ratio in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95):
            for window in (1, 8, 32, 64):
                for n_layers in (2, 8, 32):
                    press = PyramidKVPress(compression_ratio=ratio, window_size=window, beta=beta)
                    for layer in range(n_layers):
                        want = _kvpress_layer_budget(layer, n_layers, n, ratio, window, beta)
                        got, feasible = pyramid_budget(layer, n_layers, n, ratio, window, beta)
                        assert got == want, (n, ratio, window, n_layers, layer)
                        assert press.layer_budget(layer, n_layers, n) == max(1, min(n, want))
                    pyramids += feasible
                    fallbacks += not feasible
    assert pyramids > 0 and fallbacks > 0  # the grid covers both branches


def test_pyramidkv_kvpress_shape_clamped_and_fallback():
    from structkv.presses.pyramidkv import pyramid_budget

    # K = 1000·0.5 = 500, min = 250, max = 750: linear from 750 down to 250, mean K, window not added
    budgets = [pyramid_budget(layer, 5, 1000, 0.5, 8, 2)[0] for layer in range(5)]
    assert budgets == [750, 625, 500, 375, 250] and sum(budgets) / 5 == 500
    # max clamped to n − w = 992, min = 2K − max: still mean K
    clamped = [pyramid_budget(layer, 3, 1000, 0.1, 8, 20)[0] for layer in range(3)]
    assert clamped[0] == 992 and clamped[-1] == 1800 - 992
    # infeasible (min = K/β < window): SnapKV's uniform round(K), for every layer
    assert {pyramid_budget(layer, 8, 256, 0.9, 8, 20) for layer in range(8)} == {(26, False)}
    assert pyramid_budget(0, 1, 1000, 0.5, 8, 2) == (500, False)  # one layer: no pyramid


def test_kept_count_is_kvpress_floor():
    for n, ratio, want in [
        (160, 0.75, 40),
        (257, 0.9, 25),
        (200, 0.9, 20),
        (10, 0.95, 1),
        (7, 0.5, 3),
    ]:
        assert SnapKVPress(compression_ratio=ratio).n_kept(n) == want
        assert want in (
            int(n * (1 - ratio)),
            int(n * (1 - ratio)) + 1,
        )  # kvpress's float expression


def test_window_scores_apply_q_norm_on_qwen3():
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    ids = torch.randint(0, 300, (1, 90), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        attns = model(ids, output_attentions=True).attentions
    got = _recorded_window_scores(model, ids, SnapKVPress(compression_ratio=0.5, window_size=8))
    for layer in range(4):
        torch.testing.assert_close(
            got[layer], _window_indeg(attns[layer], 8, 7), atol=1e-6, rtol=1e-4
        )
