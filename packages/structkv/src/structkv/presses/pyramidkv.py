"""PyramidKV (Cai et al., 2024): SnapKV scores with per-layer budgets shrinking linearly with depth."""

from __future__ import annotations

from dataclasses import dataclass

from structkv.errors import PressConfigError
from structkv.presses.snapkv import SnapKVPress


@dataclass
class PyramidKVPress(SnapKVPress):
    """Budgets (KVCache-Factory / kvpress formula): with A = M − w free entries on average,
    min = A/β, max = 2A − min, layer l keeps w + round(max − l·(max − min)/(L − 1)).
    The mean over layers is M. Falls back to the uniform (SnapKV) budget when max + w > n.
    """

    beta: int = 20

    def validate(self) -> None:
        super().validate()
        if self.beta < 1:
            raise PressConfigError(f"beta must be >= 1, got {self.beta}")

    def layer_budget(self, layer: int, n_layers: int, n: int) -> int:
        m = self.n_kept(n)
        w = min(self.window_size, n)
        a = m - w
        if a <= 0 or n_layers < 2:
            return m
        lo = a / self.beta
        hi = 2 * a - lo
        if hi + w > n:
            return m
        return round(w + hi - layer * (hi - lo) / (n_layers - 1))
