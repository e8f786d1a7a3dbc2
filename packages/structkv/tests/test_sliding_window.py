"""Sliding-window models (Mistral with ``sliding_window``, Ministral): exact below the window, refused from it on.

The oracle is the same weights with ``sliding_window=None``: below the window the sliding mask equals the causal
mask, so every press must give the same cache, kept positions, question logits and answers on both — and the
full-attention path is itself checked against the eager attention / plain forward in test_baselines and
test_decode.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from papercore.testing.builders import tiny_causal_lm
from structkv import generate, prefill, question_logits
from structkv._compat import sliding_window
from structkv.errors import UnsupportedModelError
from structkv.registry import make_press

W = 256
# FastKV shares StructKV's propagation path
METHODS = ["snapkv", "pyramidkv", "gemfilter", "structkv"]


def _pair(impl: str, tiny_tokenizer):
    kw = dict(tokenizer=tiny_tokenizer, num_hidden_layers=8, attn_implementation=impl)
    swa = tiny_causal_lm("mistral", sliding_window=W, **kw)
    full = tiny_causal_lm("mistral", **kw)
    full.load_state_dict(swa.state_dict())
    return swa, full


@pytest.fixture(scope="module")
def pairs(tiny_tokenizer):
    cache = {}

    def get(impl):
        if impl not in cache:
            cache[impl] = _pair(impl, tiny_tokenizer)
        return cache[impl]

    return get


CASES = [("sdpa", m) for m in METHODS] + [("eager", "structkv")]  # eager: 4-D sliding masks


@pytest.mark.parametrize(("impl", "method"), CASES)
def test_below_the_window_every_press_equals_full_attention(pairs, context_ids, impl, method):
    swa, full = pairs(impl)
    assert sliding_window(swa) == W and sliding_window(full) is None
    kw = {"beta": 2} if method == "pyramidkv" else {}
    q = torch.tensor([[5, 17, 99, 3]])
    out = {}
    for name, model in (("swa", swa), ("full", full)):
        # the cache model.generate would build: sliding-window layers for the SWA model
        res = prefill(
            model,
            context_ids,
            make_press(method, 0.25, window_size=8, **kw),
            cache=DynamicCache(config=model.config),
        )
        logits = question_logits(model, res, q)
        out[name] = (res, logits, generate(model, res, q, max_new_tokens=2))
    (r_s, l_s, a_s), (r_f, l_f, a_f) = out["swa"], out["full"]
    assert (
        type(r_s.cache.layers[0]).__name__ == "DynamicSlidingWindowLayer"
    )  # the sliding path is exercised
    assert r_s.stats["sliding_window"] == W and r_f.stats["sliding_window"] is None
    assert r_s.cache_lengths == r_f.cache_lengths and r_s.pivot_layer == r_f.pivot_layer
    for layer in range(8):
        assert torch.equal(r_s.kept_indices[layer], r_f.kept_indices[layer])
        torch.testing.assert_close(
            r_s.cache.layers[layer].keys[:, :, : r_s.cache_lengths[layer]],
            r_f.cache.layers[layer].keys[:, :, : r_f.cache_lengths[layer]],
        )
    torch.testing.assert_close(l_s, l_f, atol=1e-5, rtol=1e-4)
    assert torch.equal(a_s, a_f)


def test_a_context_reaching_the_window_is_refused_with_the_reason(tiny_tokenizer):
    model = tiny_causal_lm(
        "mistral", tokenizer=tiny_tokenizer, sliding_window=64, num_hidden_layers=4
    )
    ids = torch.randint(3, 200, (1, 64), generator=torch.Generator().manual_seed(0))
    with pytest.raises(UnsupportedModelError, match=r"sliding_window=64.*fewer than 64 tokens"):
        prefill(model, ids, make_press("snapkv", 0.5, window_size=8))
    assert all(len(layer._forward_pre_hooks) == 0 for layer in model.model.layers)
    assert not any(layer.self_attn._forward_hooks for layer in model.model.layers)
    # without a press the model runs as transformers defines it; kept_indices name the cropped window
    res = prefill(model, ids, cache=DynamicCache(config=model.config))
    assert res.cache_lengths == [63] * 4
    assert torch.equal(res.kept_indices[0][0, 0], torch.arange(1, 64))
    short = prefill(model, ids[:, :63], make_press("structkv", 0.2, window_size=8))
    assert short.stats["skipped"] is None and short.cache_lengths == [12] * 4


def test_hybrid_ministral_layers_and_other_attention_types():
    from transformers import MinistralConfig, MinistralForCausalLM, Qwen2Config

    cfg = MinistralConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=W,
        layer_types=["sliding_attention", "full_attention"] * 2,
    )
    torch.manual_seed(0)
    model = MinistralForCausalLM(cfg).eval()
    ids = torch.randint(0, 300, (1, 120), generator=torch.Generator().manual_seed(1))
    res = prefill(model, ids, make_press("snapkv", 0.5, window_size=8))
    assert res.cache_lengths == [60] * 4 and res.stats["sliding_window"] == W
    assert sliding_window(Qwen2Config(sliding_window=64, use_sliding_window=False)) is None
    model.config.layer_types = ["chunked_attention", "full_attention"] * 2
    with (
        pytest.raises(UnsupportedModelError, match="chunked_attention"),
        make_press("snapkv", 0.5)(model),
    ):
        pass


def test_decoding_past_the_window_is_refused_and_prefill_builds_the_sliding_cache(tiny_tokenizer):
    """prefill's own cache is the one model.generate builds (sliding layers); question + answer that would
    push a compressed cache past W − 1 entries are refused before any token is fed."""
    model = tiny_causal_lm(
        "mistral", tokenizer=tiny_tokenizer, sliding_window=64, num_hidden_layers=4
    )
    ids = torch.randint(3, 200, (1, 50), generator=torch.Generator().manual_seed(0))
    res = prefill(model, ids, make_press("snapkv", 0.5, window_size=8))
    assert type(res.cache.layers[0]).__name__ == "DynamicSlidingWindowLayer"
    q = torch.tensor([[5, 17, 99, 3]])
    generate(model, res, q, max_new_tokens=10)  # 50 + 4 + 9 = 63 = W − 1: exact, allowed
    res = prefill(model, ids, make_press("snapkv", 0.5, window_size=8))
    before = list(res.cache_lengths)
    with pytest.raises(UnsupportedModelError, match=r"sliding window \(64\).*under 64 tokens"):
        generate(model, res, q, max_new_tokens=11)
    assert res.cache_lengths == before
    with pytest.raises(UnsupportedModelError, match="sliding window"):
        question_logits(model, res, torch.randint(3, 200, (1, 14)))
