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


@pytest.mark.parametrize(("g", "n"), [(4, 37), (3, 23)])
def test_full_indegree_gqa_odd_length_with_budget_chosen_blocks(monkeypatch, g, n):
    import structkv.kernels.indegree_torch as kt

    b, h_kv, d = 2, 2, 8
    gen = torch.Generator().manual_seed(g * n)
    q = torch.randn(b, h_kv * g, n, d, generator=gen) * 2
    k = torch.randn(b, h_kv, n, d, generator=gen)
    a = window_attention(q, k, torch.arange(n), 0.35)
    want = a.sum(dim=2).view(b, h_kv, g, n).sum(dim=2) / (g * (n - torch.arange(n)).float())
    # a budget of 5 logits rows (B·H·N floats each): 5 does not divide n, the last block is ragged
    monkeypatch.setattr(kt, "FULL_LOGITS_BUDGET_BYTES", 5 * b * h_kv * g * n * 4)
    assert kt.full_block_rows(b, h_kv * g, n) == 5
    torch.testing.assert_close(kt.full_indegree_torch(q, k, 0.35), want, atol=1e-6, rtol=1e-5)
    # bf16 inputs are scored in float32
    got16 = kt.full_indegree_torch(q.bfloat16(), k.bfloat16(), 0.35)
    a16 = window_attention(q.bfloat16(), k.bfloat16(), torch.arange(n), 0.35)
    want16 = a16.sum(dim=2).view(b, h_kv, g, n).sum(dim=2) / (g * (n - torch.arange(n)).float())
    assert got16.dtype == torch.float32
    torch.testing.assert_close(got16, want16, atol=1e-6, rtol=1e-5)


def test_full_block_rows_keep_the_logits_block_under_the_budget():
    from structkv.kernels.indegree_torch import FULL_LOGITS_BUDGET_BYTES, full_block_rows

    assert FULL_LOGITS_BUDGET_BYTES == 256 * 2**20
    for b, h, n in [(1, 32, 131072), (1, 32, 8192), (2, 8, 100), (1, 64, 2**22)]:
        rows = full_block_rows(b, h, n)
        assert 1 <= rows <= n
        assert rows == 1 or rows * b * h * n * 4 <= FULL_LOGITS_BUDGET_BYTES
    assert full_block_rows(1, 32, 8192) == 256  # 32 heads · 8k keys: 256 rows = 256 MiB
    assert full_block_rows(2, 8, 100) == 100  # a short context: one block


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
