"""SnapKV (Li et al., 2024): window in-degree of the last ``window_size`` queries, pooled, GQA-averaged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from structkv.centrality import avg_pool
from structkv.errors import NonFiniteScoreError
from structkv.kernels import window_indegree
from structkv.presses.base import window_queries
from structkv.presses.scorer import ScorerPress


@dataclass
class SnapKVPress(ScorerPress):
    """Score s^g(j) = pooled mean window attention to key j (spec §2.1); the window itself is always kept.

    As kvpress's ``SnapKVPress``: the last ``w`` post-RoPE queries attend causally to all n keys (the
    softmax includes the window's own keys), the attention to the n − w context keys is averaged over the
    window queries and the query heads of each KV group and average-pooled (``kernel_size``, zero padding,
    zeros counted) **over the context keys only**, so the window's large self-attention never leaks into
    the pooled scores of the last context tokens. The window keys get score max + 1 (kvpress pads with the
    max), so they are always kept when the budget allows. Defaults follow the FastKV/StructKV-paper runs
    (window 32, kernel 7); kvpress uses 64 / 5. ``tests/test_snapkv_kvpress_equivalence.py`` checks the
    scores and the kept sets against a re-statement of kvpress's press.
    """

    compression_ratio: float = 0.0
    window_size: int = 32
    kernel_size: int = 7
    use_triton: Literal["auto"] | bool = "auto"

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        n = keys.shape[2]
        w = max(1, min(self.window(), n))
        q = window_queries(module, hidden_states, kwargs, w)
        q_pos = torch.arange(n - w, n, device=keys.device)
        indeg, _ = window_indegree(q, keys, q_pos, float(module.scaling), self.use_triton)
        scores = indeg.clone()
        if n > w:
            scores[..., : n - w] = avg_pool(indeg[..., : n - w].contiguous(), int(self.kernel_size))
        if not torch.isfinite(scores).all():
            raise NonFiniteScoreError(f"non-finite window in-degree at layer {module.layer_idx}")
        # protect the window: its score becomes max + 1 (kvpress pads with the max)
        top = scores[..., : n - w].amax(dim=-1, keepdim=True) if n > w else scores.new_zeros(1)
        scores[..., n - w :] = top + 1
        return scores
