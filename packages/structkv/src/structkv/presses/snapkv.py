"""SnapKV (Li et al., 2024): window in-degree of the last ``window_size`` queries, pooled, GQA-averaged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from structkv.presses.scorer import ScorerPress


@dataclass
class SnapKVPress(ScorerPress):
    """Score s^g(j) = pooled mean window attention to key j (spec §2.1); the window itself is always kept.

    Defaults follow the FastKV/StructKV-paper runs (window 32, kernel 7); kvpress uses 64 / 5.
    """

    compression_ratio: float = 0.0
    window_size: int = 32
    kernel_size: int = 7
    use_triton: Literal["auto"] | bool = "auto"

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        indeg, _ = self.window_scores(module, hidden_states, keys, kwargs)
        n = keys.shape[2]
        w = min(self.window(), n)
        # protect the window as kvpress does: its score becomes max + 1
        indeg[..., n - w :] = indeg.amax(dim=-1, keepdim=True) + 1
        return indeg
