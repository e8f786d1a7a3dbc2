"""ScorerPress: keep the top-M entries of a per-token score, per KV head (kvpress ``ScorerPress``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structkv.errors import NonFiniteScoreError
from structkv.presses.base import BasePress


@dataclass
class ScorerPress(BasePress):
    """Decode-only press: full prefill, then each layer keeps M = max(1, int((1 − compression_ratio)·n)) entries."""

    def score(
        self,
        module: torch.nn.Module,
        hidden_states: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attentions: torch.Tensor | None,
        kwargs: dict,
    ) -> torch.Tensor:
        """Per-token importance (B, H_kv, n); higher is kept."""
        raise NotImplementedError

    def layer_budget(self, layer: int, n_layers: int, n: int) -> int:
        """Entries layer ``layer`` keeps: M = max(1, int(n·(1 − compression_ratio))) as kvpress (PyramidKV overrides)."""
        return self.n_kept(n)

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        if self.compression_ratio == 0:
            return keys, values
        n = keys.shape[2]
        run = self._run
        m = self.layer_budget(int(module.layer_idx), run.n_layers if run else 1, n)
        if m >= n:
            return keys, values
        scores = self.score(module, hidden_states, keys, values, attentions, kwargs)
        if not torch.isfinite(scores).all():
            raise NonFiniteScoreError(f"non-finite score at layer {module.layer_idx}")
        idx = scores.topk(m, dim=-1).indices.sort(dim=-1).values
        return self.keep(int(module.layer_idx), keys, values, idx)
