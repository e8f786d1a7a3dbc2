"""centrality_queries="full": all-query in-degree with causal normalisation (spec §2.1)."""

from __future__ import annotations

import pytest
import torch

from structkv import StructKVPress, prefill
from structkv.errors import PressConfigError
from structkv.kernels.indegree_torch import full_indegree_torch, window_attention


@pytest.mark.parametrize(("n", "block"), [(17, 4), (40, 256)])
def test_full_indegree_equals_the_explicit_attention_matrix(n, block):
    gen = torch.Generator().manual_seed(n)
    q = torch.randn(2, 4, n, 8, generator=gen)
    k = torch.randn(2, 2, n, 8, generator=gen)
    a = window_attention(q, k, torch.arange(n), 0.35)  # every position as a query: (B, H, n, n)
    want = a.sum(dim=2).view(2, 2, 2, n).sum(dim=2) / (2 * (n - torch.arange(n)).float())
    got = full_indegree_torch(q, k, 0.35, block=block)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_causal_normalisation_removes_the_early_token_bias():
    # uniform attention (q = 0): raw column sums favour early keys; the normalised score is flat
    # up to the harmonic tail: s(j) = (1/(n-j)) Σ_{i≥j} 1/(i+1), decreasing slowly, never > 1
    n = 32
    q = torch.zeros(1, 2, n, 4)
    k = torch.randn(1, 2, n, 4)
    s = full_indegree_torch(q, k, 1.0)[0, 0]
    raw = torch.tensor([sum(1 / (i + 1) for i in range(j, n)) for j in range(n)])
    torch.testing.assert_close(s, raw / (n - torch.arange(n)).float())
    assert raw[0] / raw[-1] > 100 and s[0] / s[-1] < 40


def test_structkv_full_variant_runs_end_to_end(make_model, context_ids):
    model = make_model("llama", "sdpa")
    press = StructKVPress(
        compression_ratio=0.8, prefill_budget=0.6, window_size=8, centrality_queries="full"
    )
    res = prefill(model, context_ids, press)
    n = context_ids.shape[1]
    assert res.pivot_layer is not None
    assert res.stats["tokens_per_layer"][0] == n and res.stats["tokens_per_layer"][-1] < n
    assert all(c == round(0.2 * n) for c in res.cache_lengths)
    window = prefill(model, context_ids, StructKVPress(0.8, 0.6, window_size=8))
    assert (
        res.stats["trace"] != window.stats["trace"]
    )  # a different centrality drives the pivot test


def test_unknown_centrality_queries_is_rejected():
    with pytest.raises(PressConfigError, match="centrality_queries"):
        StructKVPress(centrality_queries="some")
