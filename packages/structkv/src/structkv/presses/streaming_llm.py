"""StreamingLLM (Xiao et al., 2023): keep ``n_sink`` attention sinks and the most recent tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structkv.presses.scorer import ScorerPress


@dataclass
class StreamingLLMPress(ScorerPress):
    compression_ratio: float = 0.0
    n_sink: int = 4

    def min_context(self) -> int:
        return self.n_sink + 1

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        b, h, n, _ = keys.shape
        m = self.n_kept(n)
        s = torch.zeros(b, h, n, device=keys.device)
        s[:, :, : self.n_sink] = 2.0
        s[:, :, n - max(0, m - self.n_sink) :] = 1.0
        return s
