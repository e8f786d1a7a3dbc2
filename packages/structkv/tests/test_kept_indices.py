"""``PrefillResult.kept_indices``: every press, every layer, every KV head — checked against the full cache."""

from __future__ import annotations

import pytest
import torch

from structkv import prefill
from structkv.registry import make_press

METHODS = ["full", "streaming_llm", "snapkv", "pyramidkv", "gemfilter", "fastkv", "structkv"]


@pytest.fixture(scope="module")
def full_run(make_model, context_ids):
    model = make_model("llama", "sdpa")
    return model, prefill(model, context_ids)


@pytest.mark.parametrize("method", METHODS)
def test_kept_indices_name_the_cached_entries(full_run, context_ids, method):
    model, full = full_run
    n = context_ids.shape[1]
    kw = {"beta": 2} if method == "pyramidkv" else {}
    press = None if method == "full" else make_press(method, 0.25, window_size=8, **kw)
    res = prefill(model, context_ids, press)
    kept = res.kept_indices
    assert sorted(k for k in kept if k >= 0) == list(range(8))
    piv = res.pivot_layer if method != "gemfilter" else None
    for layer in range(8):
        idx = kept[layer]
        assert idx.shape == (1, 2, res.cache_lengths[layer])
        assert bool((idx.diff(dim=-1) > 0).all()) and int(idx.max()) < n
        exact = method not in ("gemfilter",) and (piv is None or layer <= piv)
        if (
            exact
        ):  # the layer saw the full context: its entries are the full cache's at those positions
            want = full.cache.layers[layer].keys.gather(2, idx[..., None].expand(-1, -1, -1, 16))
            torch.testing.assert_close(res.cache.layers[layer].keys, want)
    if method in ("fastkv", "structkv"):
        p = kept[-1]
        assert p.shape == (1, res.stats["propagated_tokens"])
        for layer in range(piv + 1, 8):  # post-pivot layers hold a subset of P
            assert set(kept[layer].flatten().tolist()) <= set(p[0].tolist())
    if method == "gemfilter":
        sel = kept[-1]
        for layer in range(8):
            assert torch.equal(kept[layer], sel[:, None].expand(-1, 2, -1))
    if method == "full":
        assert torch.equal(kept[0], torch.arange(n).expand(1, 2, -1))


def test_snapkv_selects_per_head_and_the_press_exposes_the_same(full_run, context_ids):
    model, _ = full_run
    press = make_press("snapkv", 0.25, window_size=8)
    res = prefill(model, context_ids, press)
    heads = res.kept_indices[3][0]
    assert not torch.equal(heads[0], heads[1])  # head-wise selection
    assert press.last_kept_indices[3] is res.kept_indices[3]
