"""StructKV: Global In-Degree Centrality + Dynamic Pivot Detection + decoupled compute/memory budgets."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from structkv._compat import get_layer_kv, set_layer_kv
from structkv.centrality import GlobalCentrality, zscale
from structkv.errors import PressConfigError
from structkv.pivot import DEFAULT_TAU, METRICS, PivotDetector, pivot_bounds
from structkv.presses.base import _Run, check_ratio
from structkv.presses.propagating import PropagatingPress, topk_protected

logger = logging.getLogger(__name__)


@dataclass
class StructKVPress(PropagatingPress):
    """Single-pass structure-aware prefill compression (spec §2).

    * GIC: C_l = Σ_{m≤l} ω_m ĉ_m, ĉ_m the pooled window in-degree of layer m, head-merged and normalised
      over the non-sink, non-window positions (``layer_weighting``: uniform / linear / sharpness).
    * DPD: l* = first l in [⌈a·L⌉, ⌊b·L⌋] (``pivot_range`` = (a, b)) after which the transition score T
      (``pivot_metric``; default ``"topk_jaccard"``: the share of the top-K selection of C that changes from
      layer l−1 to l, K the real propagation budget at l; see :mod:`structkv.pivot`) stayed below ``pivot_tau``
      (default: calibrated per metric, 0.04) for ``pivot_patience`` layers, else l_max. With a compute budget,
      l_max is capped at ⌊β_c·L⌋ − 1, so the layers that run at full length fit in it (8 layers, β_c = 0.6: 3).
      ``pivot=<int>`` (or a fraction of depth in (0, 1)) fixes the pivot: the −DPD ablation.
    * SPD: layers > l* process P = sinks ∪ window ∪ TopK(C_{l*}), |P| = ρ_p·N with
      ρ_p = clip((β_c − (l*+1)/L) / (1 − (l*+1)/L), ρ_m, 1) (β_c = ``prefill_budget``; ``propagation_ratio``
      pins ρ_p). Every layer keeps M = int(ρ_m·N) KV entries per head by σ = z(s_l) + λ·z(C_{l*})
      (``kv_score``: blend / local / global; λ = ``hub_weight``). Pre-pivot caches stay full until the
      pivot fires, then are compressed at once.

    Ablations of the spec: ``use_gic=False`` (−GIC) selects P and the hub term of σ with the pivot layer's own
    ĉ_{l*} instead of C_{l*} — same pivot rule, same |P|; ``decouple=False`` (−decoupling) uses one budget for
    compute and memory: ρ_p = ρ_m and every layer's cache holds exactly P (|P| = M).

    Short contexts degrade: if M < n_sink + window_size the window shrinks to M − n_sink (logged,
    ``stats["degraded"]``); if M ≤ n_sink the call is left uncompressed (``stats["skipped"]``).
    """

    compression_ratio: float = 0.9
    prefill_budget: float = 0.6
    propagation_ratio: float | None = None
    window_size: int = 32
    kernel_size: int = 7
    n_sink: int = 4
    pivot: Literal["auto"] | int | float = "auto"
    pivot_range: tuple[float, float] = (0.25, 0.5)
    pivot_metric: Literal["topk_jaccard", "js", "kl", "entropy", "js_running"] = "topk_jaccard"
    pivot_tau: float | None = None
    pivot_patience: int = 2
    centrality_queries: Literal["window", "full"] = "window"
    layer_weighting: Literal["uniform", "linear", "sharpness"] = "uniform"
    hub_weight: float = 1.0
    kv_score: Literal["blend", "local", "global"] = "blend"
    use_gic: bool = True
    decouple: bool = True
    use_triton: Literal["auto"] | bool = "auto"

    def validate(self) -> None:
        super().validate()
        check_ratio("prefill_budget", self.prefill_budget)
        rho_m = self.memory_ratio
        if not isinstance(self.use_gic, bool) or not isinstance(self.decouple, bool):
            raise PressConfigError(
                f"use_gic and decouple must be bools, got {self.use_gic!r} and {self.decouple!r}"
            )
        if self.propagation_ratio is not None:
            check_ratio("propagation_ratio", self.propagation_ratio)
            if not self.decouple:
                raise PressConfigError(
                    f"decouple=False couples the budgets (ρ_p = ρ_m); it cannot be combined with "
                    f"propagation_ratio={self.propagation_ratio}"
                )
            if rho_m > self.propagation_ratio + 1e-9:
                raise PressConfigError(
                    f"memory budget 1 - compression_ratio = {rho_m:.3g} exceeds propagation_ratio "
                    f"{self.propagation_ratio}: post-pivot layers cannot keep more KV than the tokens they process"
                )
        elif self.decouple and rho_m > self.prefill_budget + 1e-9:
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
        p = self.pivot
        ok = (
            p == "auto"
            or (isinstance(p, int) and not isinstance(p, bool) and p >= 0)
            or (isinstance(p, float) and 0.0 < p < 1.0)
        )
        if not ok:
            raise PressConfigError(
                f"pivot must be 'auto', a non-negative int layer or a fraction of depth in (0, 1), got {p!r}"
            )
        a, b = self.pivot_range
        if not 0 <= a <= b <= 1:
            raise PressConfigError(
                f"pivot_range must satisfy 0 <= a <= b <= 1, got {self.pivot_range}"
            )
        if self.pivot_patience < 1 or self.tau < 0 or self.hub_weight < 0:
            raise PressConfigError(
                f"pivot_patience must be >= 1, pivot_tau and hub_weight >= 0; got "
                f"{self.pivot_patience}, {self.pivot_tau}, {self.hub_weight}"
            )

    @property
    def tau(self) -> float:
        """τ in use: ``pivot_tau``, or the calibrated default of ``pivot_metric`` (:data:`structkv.pivot.DEFAULT_TAU`)."""
        return DEFAULT_TAU[self.pivot_metric] if self.pivot_tau is None else float(self.pivot_tau)

    def fixed_pivot(self, n_layers: int) -> int | None:
        """The pivot layer when ``pivot`` is fixed (int, or ⌊fraction·L⌋), else None."""
        if self.pivot == "auto":
            return None
        p = int(self.pivot * n_layers) if isinstance(self.pivot, float) else int(self.pivot)
        if p > n_layers - 2:
            raise PressConfigError(
                f"pivot={self.pivot} resolves to layer {p}; it must be <= L-2 = {n_layers - 2}"
            )
        return p

    # ---------------------------------------------------------------- per call
    def reset(self) -> None:
        super().reset()
        self.detector = None
        self._rho_p = None
        self._violated = False
        self._c_hat: dict[int, torch.Tensor] = {}
        self._s: dict[int, torch.Tensor] = {}

    def begin(self, run: _Run) -> None:
        L = run.n_layers
        fixed = self.fixed_pivot(L)
        if fixed is None:
            self._lmin, self._lmax = pivot_bounds(L, self.pivot_range)
            if self.decouple and self.propagation_ratio is None:
                # layers 0..l* run at full length: cap l_max so that (l_max + 1)/L ≤ prefill_budget
                cap = math.floor(self.prefill_budget * L + 1e-9) - 1
                self._lmax = max(self._lmin, min(self._lmax, cap))
        else:
            self._lmin = self._lmax = fixed
        self._n, self._L = run.n, L
        self._m = self.n_kept(run.n)
        if self._m <= self.n_sink:
            self.skip(
                f"KV budget M = int({self.memory_ratio:.3g}·{run.n}) = {self._m} cannot hold the "
                f"{self.n_sink} sink tokens and a window"
            )
            return
        if self._m < self.n_sink + self.window_size:
            self._window = self._m - self.n_sink
            self.degrade(
                f"KV budget M = int({self.memory_ratio:.3g}·{run.n}) = {self._m} is smaller than n_sink + "
                f"window_size = {self.n_sink + self.window_size}: window shrunk to {self._window}"
            )
        self.centrality = GlobalCentrality(run.n, self.n_sink, self.window(), self.layer_weighting)
        self.detector = PivotDetector(
            L, self._lmin, self._lmax, self.pivot_metric, self.tau, self.pivot_patience
        )

    def propagation_size(self, pivot: int, n_layers: int, n: int) -> tuple[int, float, bool]:
        """(|P|, ρ_p, budget_violated) for the pivot ``pivot`` (spec §2.4; ρ_p = ρ_m when not decoupled)."""
        rho_m = self.memory_ratio
        frac = (pivot + 1) / n_layers
        violated = False
        if not self.decouple:
            return self.n_kept(n), rho_m, False
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
        c_hat = self.centrality.update(
            layer, indeg if centrality_scores is None else centrality_scores, entropy
        )
        self._c_hat[layer] = c_hat
        size = self.propagation_size(layer, self._L, self._n)[0]
        k = size - min(self.n_sink, self._n) - self.window()
        fired = self.detector.step(layer, c_hat, self.centrality.C, entropy, k)
        if self.pivot != "auto":
            fired = layer == self._lmax
            self.detector.trace[-1]["pivot"] = fired
            if fired:
                self.detector.fired_at, self.detector.reason = layer, "fixed"
        return fired

    def selection_scores(self) -> torch.Tensor:
        """(B, N) score that picks P and the hub term of σ: C_{l*} (GIC), or ĉ_{l*} with ``use_gic=False``."""
        if self.use_gic:
            return self.centrality.C
        return self._c_hat[max(self._c_hat)]

    def select_propagation(self, pivot: int, n_layers: int, n: int) -> torch.Tensor:
        """P (B, |P|): sinks ∪ window ∪ TopK(selection score), sorted ascending."""
        size, rho, violated = self.propagation_size(pivot, n_layers, n)
        if violated and not self._violated:
            warnings.warn(
                f"pivot layer {pivot} uses {(pivot + 1) / n_layers:.2f} of the depth at full length, more than "
                f"prefill_budget={self.prefill_budget}; propagating the memory budget only",
                stacklevel=2,
            )
        self._violated, self._rho_p = violated, rho
        return topk_protected(self.selection_scores(), size, self.n_sink, self.window())

    def kv_indices(self, s_local: torch.Tensor, c_global: torch.Tensor) -> torch.Tensor:
        """Per-head kept positions (B, H_kv, M) by σ = z(s) + λ z(C) (spec §2.5) over the layer's tokens."""
        if self.kv_score == "local":
            sigma = zscale(s_local)
        elif self.kv_score == "global":
            sigma = zscale(c_global).unsqueeze(1).expand_as(s_local).clone()
        else:
            sigma = zscale(s_local) + self.hub_weight * zscale(c_global).unsqueeze(1)
        return topk_protected(sigma, self._m, self.n_sink, self.window())

    def _pre_pivot_indices(self, s_local: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """KV kept by a layer ≤ l* (it holds all N tokens): σ top-M, or P itself when coupled."""
        if self.decouple:
            return self.kv_indices(s_local, sel)
        return self._keep.unsqueeze(1).expand(-1, s_local.shape[1], -1)

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
            sel = self.selection_scores()
            cache = run.cache
            for m in range(
                layer
            ):  # compress the full pre-pivot caches now that the selection is known
                k_m, v_m = get_layer_kv(cache, m)
                idx = self._pre_pivot_indices(self._s[m], sel)
                set_layer_kv(cache, m, *self.keep(m, k_m, v_m, idx))
            self._s.clear()
            return self.keep(layer, keys, values, self._pre_pivot_indices(indeg, sel))
        if not self.decouple:  # the layer processes exactly P and keeps all of it
            idx = torch.arange(keys.shape[2], device=keys.device).expand(*keys.shape[:2], -1)
            return self.keep(layer, keys, values, idx)
        c_p = self.selection_scores().gather(1, self._keep)
        return self.keep(layer, keys, values, self.kv_indices(indeg, c_p))

    def finish(self, stats: dict) -> None:
        super().finish(stats)
        det = getattr(self, "detector", None)
        stats["trace"] = [] if det is None else list(det.trace)
        stats["pivot_reason"] = None if det is None else det.reason
        stats["pivot_metric"] = self.pivot_metric
        stats["pivot_tau"] = self.tau
        stats["propagation_ratio"] = getattr(self, "_rho_p", None)
        stats["budget_violated"] = bool(getattr(self, "_violated", False))
        stats["use_gic"] = self.use_gic
        stats["decouple"] = self.decouple
