"""Ragged-cache decoding: masked question block == token-wise; full-cache decode == plain forward; reuse."""

import pytest
import torch

from structkv import PyramidKVPress, StructKVPress, generate, prefill, question_logits
from structkv.generation import trim_cache


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_full_cache_question_logits_equal_plain_forward(make_model, context_ids, impl):
    model = make_model("llama", impl)
    q = torch.tensor([[5, 17, 99, 3]])
    res = prefill(model, context_ids)
    got = question_logits(model, res, q)
    with torch.no_grad():
        ref = model(torch.cat([context_ids, q], dim=1)).logits[:, -4:]
    torch.testing.assert_close(got, ref.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "press",
    [
        StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8),
        # β = 2 makes the kvpress pyramid feasible at N = 160 (K/β ≥ window), so layers really differ
        PyramidKVPress(compression_ratio=0.7, window_size=8, beta=2),
    ],
    ids=["structkv", "pyramidkv"],
)
def test_masked_and_tokenwise_question_modes_agree(make_model, context_ids, impl, press):
    model = make_model("llama", impl)
    q = torch.tensor([[5, 17, 99, 3, 250]])
    res = prefill(model, context_ids, press)
    assert len(set(res.cache_lengths)) > 1 or isinstance(press, StructKVPress)
    masked = question_logits(model, res, q, "masked")
    tokenwise = question_logits(model, res, q, "tokenwise")
    torch.testing.assert_close(masked, tokenwise, atol=1e-5, rtol=1e-4)
    # decoding appends one entry per layer and positions continue at N
    out = generate(model, res, q, max_new_tokens=3)
    assert out.shape == (1, 3)
    assert [layer.keys.shape[2] for layer in res.cache.layers] == [
        n + 5 + 2 for n in res.cache_lengths
    ]


def test_multi_question_reuse_of_one_compressed_context(make_model, context_ids):
    model = make_model("qwen2", "sdpa")
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    q1, q2 = torch.tensor([[7, 8, 9]]), torch.tensor([[40, 41]])
    shared = prefill(model, context_ids, press)
    a1 = generate(model, shared, q1, max_new_tokens=4)
    a2 = generate(model, shared, q2, max_new_tokens=4)
    fresh = generate(model, prefill(model, context_ids, press), q2, max_new_tokens=4)
    assert torch.equal(a2, fresh)
    assert a1.shape == (1, 4)
    trim_cache(shared)
    assert [layer.keys.shape[2] for layer in shared.cache.layers] == shared.cache_lengths


def test_noop_structkv_generation_equals_full(make_model, context_ids):
    model = make_model("mistral", "eager")
    q = torch.tensor([[11, 12, 13]])
    full = generate(model, prefill(model, context_ids), q, max_new_tokens=5)
    noop = generate(
        model,
        prefill(
            model,
            context_ids,
            StructKVPress(compression_ratio=0.0, prefill_budget=1.0, window_size=8),
        ),
        q,
        max_new_tokens=5,
    )
    assert torch.equal(full, noop)
