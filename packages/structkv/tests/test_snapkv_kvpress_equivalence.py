"""SnapKVPress equals a re-statement of kvpress's ``SnapKVPress`` (NVIDIA/kvpress, presses/snapkv_press.py).

kvpress's score, restated here from its description: the last ``w`` hidden states go through ``q_proj``
and RoPE (the positions of the window), attend to all n keys (GQA keys repeated per query head) with an
upper-triangular −inf mask so each window query sees only keys up to itself, softmax in float32, keep the
columns of the n − w context keys, mean over the window queries, ``avg_pool1d(kernel, padding=kernel//2,
stride=1)``, mean over the query heads of each KV group, then pad the w window positions with the
maximum score. ``ScorerPress`` keeps ``topk(int(n·(1 − ratio)))`` of that score per KV head.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

from structkv import SnapKVPress
from structkv.presses.base import _Run


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def kvpress_snapkv_scores(module, hidden_states, keys, window, kernel, position_embeddings):
    """kvpress's SnapKVPress.score (compute_window_attention path), restated."""
    b, n, _ = hidden_states.shape
    h, h_kv, d = module.config.num_attention_heads, keys.shape[1], module.head_dim
    g = h // h_kv
    q = module.q_proj(hidden_states[:, -window:]).view(b, window, h, d).transpose(1, 2)
    cos, sin = position_embeddings
    cos, sin = cos[:, -window:].unsqueeze(1), sin[:, -window:].unsqueeze(1)
    q = q * cos + _rotate_half(q) * sin
    k = keys[:, :, None].expand(b, h_kv, g, n, d).reshape(b, h, n, d)  # repeat_kv
    logits = q @ k.transpose(2, 3) / math.sqrt(d)
    logits = logits + torch.triu(torch.full_like(logits, float("-inf")), diagonal=n - window + 1)
    attn = torch.softmax(logits, dim=-1, dtype=torch.float32)[..., :-window]
    s = attn.mean(dim=-2)
    s = F.avg_pool1d(s, kernel_size=kernel, padding=kernel // 2, stride=1)
    s = s.view(b, h_kv, g, n - window).mean(dim=2)
    return F.pad(s, (0, window), value=s.max().item())


def kvpress_kept(scores, m):
    """kvpress ScorerPress: the top m positions per KV head (as a sorted index set)."""
    return scores.topk(m, dim=-1).indices.sort(dim=-1).values


GRID = [
    # (n, window, head_dim, n_heads, n_kv_heads, batch, kernel)
    (40, 8, 16, 4, 4, 1, 5),
    (97, 16, 32, 8, 2, 2, 7),
    (128, 32, 64, 9, 3, 1, 7),  # SmolLM2's GQA shape
    (203, 64, 16, 6, 1, 2, 5),  # kvpress defaults, MQA
    (150, 5, 8, 4, 2, 3, 3),
]


def _setup(n, window, head_dim, n_heads, n_kv, batch, seed):
    cfg = LlamaConfig(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv,
        head_dim=head_dim,
        intermediate_size=32,
        num_hidden_layers=1,
        max_position_embeddings=4 * n,
    )
    torch.manual_seed(seed)
    module = LlamaAttention(cfg, layer_idx=0).eval()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.5)  # peaked attention, so the ranking is not all ties
    rot = LlamaRotaryEmbedding(cfg)
    hidden = torch.randn(batch, n, cfg.hidden_size)
    pos = torch.arange(n).unsqueeze(0).expand(batch, -1)
    cos, sin = rot(hidden, pos)
    keys = torch.randn(batch, n_kv, n, head_dim) * 2
    values = torch.randn(batch, n_kv, n, head_dim)
    return module, hidden, keys, values, {"position_embeddings": (cos, sin), "position_ids": pos}


@pytest.mark.parametrize("n,window,head_dim,n_heads,n_kv,batch,kernel", GRID)
@torch.no_grad()
def test_snapkv_scores_equal_kvpress(n, window, head_dim, n_heads, n_kv, batch, kernel):
    module, hidden, keys, values, kw = _setup(n, window, head_dim, n_heads, n_kv, batch, seed=n)
    press = SnapKVPress(0.5, window_size=window, kernel_size=kernel, use_triton=False)
    ours = press.score(module, hidden, keys, values, None, kw)
    ref = kvpress_snapkv_scores(module, hidden, keys, window, kernel, kw["position_embeddings"])
    assert ours.shape == ref.shape == (batch, n_kv, n)
    torch.testing.assert_close(
        ours[..., : n - window], ref[..., : n - window], rtol=1e-5, atol=1e-7
    )
    # the window outranks every context key in both (kvpress: = global max, here: per-head max + 1)
    ctx_max = ours[..., : n - window].amax(dim=-1, keepdim=True)
    assert (ours[..., n - window :] > ctx_max).all()
    assert (ref[..., n - window :] >= ref[..., : n - window].amax(dim=-1, keepdim=True)).all()


# kvpress breaks the tie between the window (padded with the max) and the top context key arbitrarily
# when the budget is at most the window, so the kept sets are compared where the budget exceeds it
KEPT_GRID = [
    (*cell, ratio)
    for cell in GRID
    for ratio in (0.5, 0.7, 0.8)
    if int(cell[0] * (1 - ratio)) > cell[1]
]


@pytest.mark.parametrize("n,window,head_dim,n_heads,n_kv,batch,kernel,ratio", KEPT_GRID)
@torch.no_grad()
def test_snapkv_kept_set_equals_kvpress(n, window, head_dim, n_heads, n_kv, batch, kernel, ratio):
    module, hidden, keys, values, kw = _setup(n, window, head_dim, n_heads, n_kv, batch, seed=n + 1)
    m = int(n * (1 - ratio))
    press = SnapKVPress(ratio, window_size=window, kernel_size=kernel, use_triton=False)
    press._run = _Run(n=n, n_layers=1, batch=batch)
    k2, v2 = press.compress(module, hidden, keys, values, None, kw)
    # kvpress takes int(n·(1 − ratio)) in floats; n_kept floors with a tolerance (documented in
    # BasePress.n_kept: 150 · 0.2 keeps 30 here, 29 in kvpress); the kept sets are compared at our count
    m_ours = press.n_kept(n)
    assert m_ours in (m, m + 1) and k2.shape[2] == m_ours
    ref_idx = kvpress_kept(
        kvpress_snapkv_scores(module, hidden, keys, window, kernel, kw["position_embeddings"]),
        m_ours,
    )
    ours_idx = press._kept[0]
    assert torch.equal(ours_idx, ref_idx)
    g = ref_idx.unsqueeze(-1).expand(-1, -1, -1, head_dim)
    torch.testing.assert_close(k2, keys.gather(2, g), rtol=0, atol=0)
    torch.testing.assert_close(v2, values.gather(2, g), rtol=0, atol=0)
    assert (ours_idx[..., -window:] == torch.arange(n - window, n)).all()


@torch.no_grad()
def test_pooling_edge_ignores_window_attention():
    """The pooled score of the last context keys must not include attention to the window's own keys.

    With all keys zero, every window query attends uniformly to the keys it sees, so every context key
    gets the same unpooled mass a; pooling over the context keys only (zero padding, as kvpress) gives the
    last context key 4/7 · a with kernel 7, whereas pooling across the window boundary would add the
    window keys' mass.
    """
    module, hidden, keys, values, kw = _setup(60, 8, 16, 4, 2, 1, seed=3)
    keys = torch.zeros_like(keys)
    press = SnapKVPress(0.5, window_size=8, kernel_size=7, use_triton=False)
    ours = press.score(module, hidden, keys, values, None, kw)
    ref = kvpress_snapkv_scores(module, hidden, keys, 8, 7, kw["position_embeddings"])
    torch.testing.assert_close(ours[..., :52], ref[..., :52])
    interior = ours[..., 20]
    torch.testing.assert_close(ours[..., 51], interior * 4 / 7)
