"""Every bad input named in the spec/issue raises a clear error."""

import warnings

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from papercore.testing.builders import tiny_causal_lm
from structkv import FastKVPress, SnapKVPress, StructKVPress, prefill
from structkv._compat import cache_kwarg_name
from structkv.errors import (
    CacheStateError,
    PressConfigError,
    PressNestingError,
    UnsupportedModelError,
)
from structkv.registry import make_press


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"compression_ratio": 1.0}, "compression_ratio"),
        ({"compression_ratio": -0.1}, "compression_ratio"),
        ({"prefill_budget": 0.0}, "prefill_budget"),
        ({"prefill_budget": 1.5}, "prefill_budget"),
        ({"compression_ratio": 0.3, "prefill_budget": 0.6}, "exceeds the compute budget"),
        ({"propagation_ratio": 0.0}, "propagation_ratio"),
        ({"compression_ratio": 0.5, "propagation_ratio": 0.2}, "exceeds propagation_ratio"),
        ({"pivot_range": (0.6, 0.3)}, "pivot_range"),
        ({"pivot_metric": "cosine"}, "pivot_metric"),
        ({"pivot": -1}, "pivot"),
        ({"pivot": 1.5}, "fraction of depth"),
        ({"pivot": True}, "pivot"),
        ({"decouple": False, "propagation_ratio": 0.3}, "decouple=False"),
        ({"use_gic": "no"}, "use_gic"),
        ({"pivot_tau": -0.1}, "pivot_tau"),
    ],
)
def test_structkv_bad_config(kwargs, match):
    with pytest.raises(PressConfigError, match=match):
        StructKVPress(**kwargs)


def test_other_presses_bad_config():
    with pytest.raises(ValueError, match="compression_ratio"):
        SnapKVPress(compression_ratio=1.2)
    with pytest.raises(ValueError, match="propagation ratio"):
        FastKVPress(compression_ratio=0.5, propagation_ratio=0.2)
    with pytest.raises(ValueError, match="unknown method"):
        make_press("h2o", 0.1)


def test_pivot_out_of_range(make_model, context_ids):
    model = make_model("llama", "sdpa")
    with pytest.raises(PressConfigError, match="L-2"):
        prefill(model, context_ids, StructKVPress(pivot=7, window_size=8))
    assert all(len(layer._forward_pre_hooks) == 0 for layer in model.model.layers)


def test_unsupported_architectures_name_what_is_missing(tiny_tokenizer):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    with (
        pytest.raises(UnsupportedModelError, match=r"model\.model\.layers.*Llama"),
        StructKVPress()(gpt2),
    ):
        pass
    swa = tiny_causal_lm("mistral", tokenizer=tiny_tokenizer, sliding_window=64)
    with pytest.raises(UnsupportedModelError, match="sliding_window=64"):
        prefill(swa, torch.ones(1, 80, dtype=torch.long), StructKVPress(window_size=8))
    assert isinstance(UnsupportedModelError("x"), TypeError)


def test_short_context_is_left_uncompressed_with_warning(make_model):
    model = make_model("llama", "sdpa")
    ids = torch.arange(3, 33).unsqueeze(0)  # 30 tokens ≤ n_sink + window + 1
    with pytest.warns(UserWarning, match="too short"):
        res = prefill(model, ids, StructKVPress(compression_ratio=0.5, prefill_budget=0.6))
    assert res.stats["skipped"] == "context too short"
    assert res.cache_lengths == [30] * 8 and res.stats["prefill_cost"] == 1.0


def test_nested_press_padding_and_non_empty_cache(make_model, context_ids):
    model = make_model("llama", "sdpa")
    with StructKVPress(window_size=8)(model):
        with pytest.raises(PressNestingError), SnapKVPress()(model):
            pass
        ids = torch.randint(3, 400, (2, 100))
        mask = torch.ones_like(ids)
        mask[1, :10] = 0
        with pytest.raises(NotImplementedError, match="padded"):
            model(ids, attention_mask=mask)
    cache = DynamicCache()
    prefill(model, context_ids[:, :50], cache=cache)
    with pytest.raises(CacheStateError, match="empty"):
        prefill(model, context_ids, StructKVPress(window_size=8), cache=cache)


def test_decode_call_under_press_warns(make_model, context_ids):
    model = make_model("llama", "sdpa")
    press = SnapKVPress(compression_ratio=0.5, window_size=8)
    with press(model):
        out = model(context_ids, use_cache=True)
        with pytest.warns(UserWarning, match="structkv.generate"):
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            model(torch.tensor([[5]]), use_cache=True, **{cache_kwarg_name(model): cache})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prefill(model, context_ids)
