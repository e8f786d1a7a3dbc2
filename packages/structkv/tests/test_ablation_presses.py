"""The spec's ablations as StructKVPress options: −GIC (``use_gic=False``) and −decoupling (``decouple=False``)."""

from __future__ import annotations

import pytest
import torch

from structkv import StructKVPress, prefill
from structkv.registry import make_press

L = 8


def test_no_decoupling_uses_one_budget(make_model, context_ids):
    model = make_model("llama", "sdpa")
    n = context_ids.shape[1]
    m = int(0.2 * n)
    dec = prefill(model, context_ids, StructKVPress(compression_ratio=0.8, window_size=8, pivot=2))
    cpl = prefill(
        model,
        context_ids,
        StructKVPress(compression_ratio=0.8, window_size=8, pivot=2, decouple=False),
    )
    piv = cpl.pivot_layer
    assert piv == 2
    assert dec.stats["propagated_tokens"] > m
    assert cpl.stats["propagated_tokens"] == m and cpl.stats["propagation_ratio"] == pytest.approx(
        0.2
    )
    assert cpl.stats["tokens_per_layer"] == [n] * (piv + 1) + [m] * (L - piv - 1)
    assert cpl.stats["prefill_cost"] < dec.stats["prefill_cost"]
    assert cpl.cache_lengths == [m] * L
    # one selection: every layer (and head) holds exactly the propagated set P
    p = cpl.kept_indices[-1]
    for layer in range(L):
        assert torch.equal(cpl.kept_indices[layer], p[:, None].expand(-1, 2, -1))
    assert cpl.stats["decouple"] is False and dec.stats["decouple"] is True


def test_ablations_run_through_the_press_and_the_registry(make_model, context_ids):
    model = make_model("llama", "sdpa")
    base = prefill(model, context_ids, make_press("structkv", 0.2, window_size=8))
    nogic = prefill(model, context_ids, make_press("structkv", 0.2, window_size=8, use_gic=False))
    assert nogic.stats["use_gic"] is False
    # same pivot rule and |P|: the detector does not depend on the selection score
    assert nogic.pivot_layer == base.pivot_layer
    assert nogic.stats["propagated_tokens"] == base.stats["propagated_tokens"]
    assert not torch.equal(nogic.kept_indices[-1], base.kept_indices[-1])
    with pytest.warns(UserWarning, match="more than prefill_budget"):  # a fixed pivot is not capped
        fixed = prefill(model, context_ids, make_press("structkv", 0.2, window_size=8, pivot=0.5))
    assert fixed.pivot_layer == 4 and fixed.stats["pivot_reason"] == "fixed"
    assert fixed.stats["budget_violated"] is True
