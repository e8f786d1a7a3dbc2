"""Dynamic Pivot Detection (spec §2.3): an online transition score and the first-stable-layer rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from structkv.centrality import js_divergence, kl_divergence, topk_jaccard_distance
from structkv.errors import PressConfigError

METRICS = ("js", "kl", "entropy", "topk_jaccard")


def pivot_bounds(n_layers: int, pivot_range: tuple[float, float]) -> tuple[int, int]:
    """(l_min, l_max) = (⌈a·L⌉, ⌊b·L⌋), validated to lie in [0, L−2] with l_min ≤ l_max."""
    a, b = pivot_range
    lo, hi = math.ceil(a * n_layers), math.floor(b * n_layers)
    hi = min(hi, n_layers - 2)
    if lo > hi or lo < 0:
        raise PressConfigError(
            f"pivot_range={pivot_range} gives l_min={lo} > l_max={hi} for {n_layers} layers "
            f"(the pivot must lie in [0, L-2]={[0, n_layers - 2]})"
        )
    return lo, hi


@dataclass
class PivotDetector:
    """Feeds per-layer metrics; ``step`` returns True at the layer where the pivot fires."""

    n_layers: int
    l_min: int
    l_max: int
    metric: str = "js"
    tau: float = 0.02
    patience: int = 2
    topk: int = 16
    trace: list[dict] = field(default_factory=list)
    _below: int = 0
    _t_max: float = 0.0
    _prev_entropy: float | None = None
    fired_at: int | None = None

    def transition(
        self, p: torch.Tensor, p_prev: torch.Tensor | None, entropy: float
    ) -> tuple[float, float]:
        """(drift D_l, transition T_l); both inf at the first layer."""
        if p_prev is None:
            drift = float("inf")
        else:
            drift = float(js_divergence(p, p_prev).mean())
        if self.metric == "js":
            t = drift
        elif self.metric == "kl":
            t = float("inf") if p_prev is None else float(kl_divergence(p, p_prev).mean())
        elif self.metric == "entropy":
            t = float("inf") if self._prev_entropy is None else self._prev_entropy - entropy
        elif self.metric == "topk_jaccard":
            t = (
                float("inf")
                if p_prev is None
                else float(topk_jaccard_distance(p, p_prev, self.topk).mean())
            )
        else:
            raise PressConfigError(f"pivot_metric must be one of {METRICS}, got {self.metric!r}")
        return drift, t

    def step(
        self, layer: int, p: torch.Tensor, p_prev: torch.Tensor | None, entropy: float
    ) -> bool:
        """Record layer ``layer``; True when l* = ``layer`` (rule: T < τ for ``patience`` layers, or l_max)."""
        drift, t = self.transition(p, p_prev, entropy)
        self._prev_entropy = entropy
        if self.metric == "entropy":
            if math.isfinite(t):
                self._t_max = max(self._t_max, t)
            stable = math.isfinite(t) and self._t_max > 0 and t < 0.5 * self._t_max
        else:
            stable = math.isfinite(t) and t < self.tau
        self._below = self._below + 1 if stable else 0
        fire = self.fired_at is None and (
            (layer >= self.l_min and self._below >= self.patience) or layer >= self.l_max
        )
        self.trace.append(
            {
                "layer": layer,
                "entropy": entropy,
                "drift": drift,
                "transition": t,
                "pivot": bool(fire),
            }
        )
        if fire:
            self.fired_at = layer
        return fire
