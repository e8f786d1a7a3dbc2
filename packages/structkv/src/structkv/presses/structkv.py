"""StructKV: Global In-Degree Centrality + Dynamic Pivot Detection + decoupled compute/memory budgets."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from structkv._compat import get_layer_kv, set_layer_kv
from structkv.centrality import GlobalCentrality, zscale
from structkv.errors import PressConfigError
from structkv.pivot import METRICS, PivotDetector, pivot_bounds
from structkv.presses.base import _Run, check_ratio
from structkv.presses.propagating import PropagatingPress, topk_protected

logger = logging.getLogger(__name__)


@dataclass
class StructKVPress(PropagatingPress):
    """Single-pass structure-aware prefill compression (spec §2).

    * GIC: C_l = Σ_{m≤l} ω_m ĉ_m, ĉ_m the pooled window in-degree of layer m, head-merged and normalised
      over the non-sink, non-window positions (``layer_weighting``: uniform / linear / sharpness).
    * DPD: l* = first l in [⌈a·L⌉, ⌊b·L⌋] (``pivot_range`` = (a, b)) whose transition score T_l (JS drift of
      C by default, ``pivot_metric``) stays below ``pivot_tau`` for ``pivot_patience`` layers, else l_max.
      ``pivot=<int>`` fixes the pivot (ablation).
    * SPD: layers > l* process P = sinks ∪ window ∪ TopK(C_{l*}), |P| = ρ_p·N with
      ρ_p = clip((β_c − (l*+1)/L) / (1 − (l*+1)/L), ρ_m, 1) (β_c = ``prefill_budget``; ``propagation_ratio``
      pins ρ_p). Every layer keeps M = round(ρ_m·N) KV entries per head by σ = z(s_l) + λ·z(C_{l*})
      (``kv_score``: blend / local / global; λ = ``hub_weight``). Pre-pivot caches stay full until the
      pivot fires, then are compressed at once.
    """

    compression_ratio: float = 0.9
    prefill_budget: float = 0.6
    propagation_ratio: float | None = None
    window_size: int = 32
    kernel_size: int = 7
    n_sink: int = 4
    pivot: Literal["auto"] | int = "auto"
    pivot_range: tuple[float, float] = (0.25, 0.5)
    pivot_metric: Literal["js", "kl", "entropy", "topk_jaccard"] = "js"
    pivot_tau: float = 0.02
    pivot_patience: int = 2
    centrality_queries: Literal["window", "full"] = "window"
    layer_weighting: Literal["uniform", "linear", "sharpness"] = "uniform"
    hub_weight: float = 1.0
    kv_score: Literal["blend", "local", "global"] = "blend"
    use_triton: Literal["auto"] | bool = "auto"

    def validate(self) -> None:
        super().validate()
        check_ratio("prefill_budget", self.prefill_budget)
        rho_m = self.memory_ratio
        if self.propagation_ratio is not None:
            check_ratio("propagation_ratio", self.propagation_ratio)
            if rho_m > self.propagation_ratio + 1e-9:
                raise PressConfigError(
                    f"memory budget 1 - compression_ratio = {rho_m:.3g} exceeds propagation_ratio "
                    f"{self.propagation_ratio}: post-pivot layers cannot keep more KV than the tokens they process"
                )
        elif rho_m > self.prefill_budget + 1e-9:
            raise PressConfigError(
                f"memory budget 1 - compression_ratio = {rho_m:.3g} exceeds the compute budget "
                f"prefill_budget = {self.prefill_budget}: the KV kept per layer (M = ρ_m·N) must fit in the "
                "propagated set, whose size is bounded by the compute budget"
            )
        if self.pivot_metric not in METRICS:
            raise PressConfigError(
                f"pivot_metric must be one of {METRICS}, got {self.pivot_metric!r}"
            )
        if self.layer_weighting not in ("uniform", "linear", "sharpness"):
            raise PressConfigError(f"unknown layer_weighting {self.layer_weighting!r}")
        if self.kv_score not in ("blend", "local", "global"):
            raise PressConfigError(
                f"kv_score must be blend, local or global, got {self.kv_score!r}"
            )
        if self.centrality_queries not in ("window", "full"):
            raise PressConfigError(
                f"centrality_queries must be 'window' or 'full', got {self.centrality_queries!r}"
            )
        if not (self.pivot == "auto" or (isinstance(self.pivot, int) and self.pivot >= 0)):
            raise PressConfigError(
                f"pivot must be 'auto' or a non-negative int, got {self.pivot!r}"
            )
        a, b = self.pivot_range
        if not 0 <= a <= b <= 1:
            raise PressConfigError(
                f"pivot_range must satisfy 0 <= a <= b <= 1, got {self.pivot_range}"
            )
        if self.pivot_patience < 1 or self.pivot_tau < 0 or self.hub_weight < 0:
            raise PressConfigError("pivot_patience must be >= 1, pivot_tau and hub_weight >= 0")

    # ---------------------------------------------------------------- per call
    def reset(self) -> None:
        super().reset()
        self.detector = None
        self._rho_p = None
        self._violated = False

    def begin(self, run: _Run) -> None:
        L = run.n_layers
        if self.pivot == "auto":
            self._lmin, self._lmax = pivot_bounds(L, self.pivot_range)
        else:
            if self.pivot > L - 2:
                raise PressConfigError(f"pivot={self.pivot} must be <= L-2 = {L - 2}")
            self._lmin = self._lmax = int(self.pivot)
        self._m = self.n_kept(run.n)
        if self._m < self.n_sink + self.window_size:
            raise PressConfigError(
                f"KV budget M = round({self.memory_ratio:.3g}·{run.n}) = {self._m} is smaller than "
                f"n_sink + window_size = {self.n_sink + self.window_size}; lower window_size or compression_ratio"
            )
        self.centrality = GlobalCentrality(
            run.n, self.n_sink, self.window_size, self.layer_weighting
        )
        self.detector = PivotDetector(
            L,
            self._lmin,
            self._lmax,
            self.pivot_metric,
            self.pivot_tau,
            self.pivot_patience,
            topk=max(1, round(self.prefill_budget * run.n) - self.n_sink - self.window_size),
        )
        self._s: dict[int, torch.Tensor] = {}

    def propagation_size(self, pivot: int, n_layers: int, n: int) -> tuple[int, float, bool]:
        """(|P|, ρ_p, budget_violated) for the pivot ``pivot`` (spec §2.4)."""
        rho_m = self.memory_ratio
        frac = (pivot + 1) / n_layers
        violated = False
        if self.propagation_ratio is not None:
            rho = float(self.propagation_ratio)
        elif frac >= 1.0:
            rho, violated = rho_m, True
        else:
            rho = (self.prefill_budget - frac) / (1.0 - frac)
            if frac > self.prefill_budget:
                violated = True
            rho = min(1.0, max(rho_m, rho))
        size = max(self.n_kept(n), min(n, round(rho * n)))
        return size, rho, violated

    def step_layer(
        self,
        layer: int,
        indeg: torch.Tensor,
        entropy: float,
        centrality_scores: torch.Tensor | None = None,
    ) -> bool:
        """Feed layer ``layer``'s pooled in-degree (B, H_kv, N); return True when it is the pivot.

        ``indeg`` is the window in-degree (the local KV score); ``centrality_scores`` (default: the same)
        is what enters the global centrality — the all-query in-degree for ``centrality_queries="full"``.
        Usable on hand-built scores (tests) as well as from the attention hook.
        """
        self._s[layer] = indeg
        self.centrality.update(
            layer, indeg if centrality_scores is None else centrality_scores, entropy
        )
        p = self.centrality.distribution()
        prev = self.centrality.prev
        p_prev = None if prev is None else prev / prev.sum(-1, keepdim=True).clamp_min(1e-12)
        fired = self.detector.step(layer, p, p_prev, entropy)
        if self.pivot != "auto":
            fired = layer == int(self.pivot)
            self.detector.trace[-1]["pivot"] = fired
        return fired

    def select_propagation(self, pivot: int, n_layers: int, n: int) -> torch.Tensor:
        """P (B, |P|): sinks ∪ window ∪ TopK(C_{l*}), sorted ascending."""
        size, rho, violated = self.propagation_size(pivot, n_layers, n)
        if violated and not self._violated:
            warnings.warn(
                f"pivot layer {pivot} uses {(pivot + 1) / n_layers:.2f} of the depth at full length, more than "
                f"prefill_budget={self.prefill_budget}; propagating the memory budget only",
                stacklevel=2,
            )
        self._violated, self._rho_p = violated, rho
        return topk_protected(self.centrality.C, size, self.n_sink, self.window_size)

    def kv_indices(self, s_local: torch.Tensor, c_global: torch.Tensor) -> torch.Tensor:
        """Per-head kept positions (B, H_kv, M) by σ = z(s) + λ z(C) (spec §2.5) over the layer's tokens."""
        if self.kv_score == "local":
            sigma = zscale(s_local)
        elif self.kv_score == "global":
            sigma = zscale(c_global).unsqueeze(1).expand_as(s_local).clone()
        else:
            sigma = zscale(s_local) + self.hub_weight * zscale(c_global).unsqueeze(1)
        return topk_protected(sigma, self._m, self.n_sink, self.window_size)

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        layer = int(module.layer_idx)
        run = self._run
        indeg, entropy = self.window_scores(module, hidden_states, keys, kwargs)
        if self._pivot is None:
            full = None
            if self.centrality_queries == "full":
                full = self.full_scores(module, hidden_states, keys, kwargs)
            if not self.step_layer(layer, indeg, entropy, full):
                return keys, values
            self._pivot = layer
            self._keep = self.select_propagation(layer, run.n_layers, run.n)
            cache = run.cache
            c = self.centrality.C
            for m in range(layer):  # compress the full pre-pivot caches now that C_{l*} is known
                k_m, v_m = get_layer_kv(cache, m)
                set_layer_kv(cache, m, *self.gather_kv(k_m, v_m, self.kv_indices(self._s[m], c)))
            self._s.clear()
            return self.gather_kv(keys, values, self.kv_indices(indeg, c))
        c_p = self.centrality.C.gather(1, self._keep)
        return self.gather_kv(keys, values, self.kv_indices(indeg, c_p))

    def finish(self, stats: dict) -> None:
        super().finish(stats)
        det = getattr(self, "detector", None)
        stats["trace"] = [] if det is None else list(det.trace)
        stats["propagation_ratio"] = getattr(self, "_rho_p", None)
        stats["budget_violated"] = bool(getattr(self, "_violated", False))
