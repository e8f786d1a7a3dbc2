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


def test_pyramidkv_budget_formula():
    press = PyramidKVPress(compression_ratio=0.75, window_size=8, beta=20)
    n, L = 160, 8
    a = 40 - 8
    lo, hi = a / 20, 2 * a - a / 20
    budgets = [press.layer_budget(layer, L, n) for layer in range(L)]
    assert budgets == [round(8 + hi - layer * (hi - lo) / (L - 1)) for layer in range(L)]
    assert budgets[0] == round(8 + hi) and budgets[-1] == round(8 + lo)
    # infeasible (max budget above n) → uniform SnapKV budget
    assert PyramidKVPress(compression_ratio=0.2, window_size=8).layer_budget(0, L, n) == 128


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
