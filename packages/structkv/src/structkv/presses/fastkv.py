"""FastKV (Jo et al., 2025): Token-Selective Propagation at a fixed layer, KV budget decoupled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from structkv.errors import PressConfigError
from structkv.presses.base import _Run, check_ratio
from structkv.presses.propagating import PropagatingPress, topk_protected


@dataclass
class FastKVPress(PropagatingPress):
    """At the TSP layer ``tsp_layer`` (int, or fraction of depth: 0.47 → 15/32) the pooled window in-degree of
    that layer alone picks P (window + top tokens, |P| = round(propagation_ratio·N)); later layers process P
    only. Every layer keeps M = round((1 − compression_ratio)·N) KV entries chosen SnapKV-style among the
    tokens it holds (window kept). M follows kvpress's count, max(1, int(N·(1 − compression_ratio))).
    """

    compression_ratio: float = 0.9
    tsp_layer: int | float = 0.47
    propagation_ratio: float = 0.2
    window_size: int = 8
    kernel_size: int = 7
    use_triton: Literal["auto"] | bool = "auto"

    def validate(self) -> None:
        super().validate()
        check_ratio("propagation_ratio", self.propagation_ratio)
        if self.memory_ratio > self.propagation_ratio + 1e-9:
            raise PressConfigError(
                f"memory budget 1 - compression_ratio = {self.memory_ratio:.3g} exceeds the propagation "
                f"ratio {self.propagation_ratio}: a layer after the TSP layer cannot keep more KV entries "
                "than the tokens it processes"
            )
        if isinstance(self.tsp_layer, float) and not 0 < self.tsp_layer < 1:
            raise PressConfigError(
                f"a fractional tsp_layer must be in (0, 1), got {self.tsp_layer}"
            )

    def pivot_index(self, n_layers: int) -> int:
        t = (
            int(self.tsp_layer * n_layers)
            if isinstance(self.tsp_layer, float)
            else int(self.tsp_layer)
        )
        if not 0 <= t <= n_layers - 2:
            raise PressConfigError(f"tsp_layer resolves to {t}; it must lie in [0, {n_layers - 2}]")
        return t

    def begin(self, run: _Run) -> None:
        self._tsp = self.pivot_index(run.n_layers)
        self._m = self.n_kept(run.n)
        self._n_p = max(self._m, round(self.propagation_ratio * run.n))
        if self._m < self.window_size:
            # short context: the window must fit in the KV budget; shrink it rather than fail
            self._window = self._m
            self.degrade(
                f"KV budget M={self._m} of a {run.n}-token context is smaller than window_size="
                f"{self.window_size}: window shrunk to {self._m}"
            )

    def select_propagation(self, indeg) -> torch.Tensor:
        """P (B, |P|): window ∪ top tokens by the TSP layer's head-mean pooled window in-degree (B, H_kv, N)."""
        return topk_protected(indeg.mean(dim=1), self._n_p, 0, self.window())

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        layer = int(module.layer_idx)
        indeg, _ = self.window_scores(module, hidden_states, keys, kwargs)
        if layer == self._tsp:
            self._keep = self.select_propagation(indeg)
            self._pivot = layer
        idx = topk_protected(indeg, self._m, 0, self.window())
        return self.keep(layer, keys, values, idx)
