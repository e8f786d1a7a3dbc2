"""Dynamic Pivot Detection (spec §2.3): an online transition score and the first-stable-layer rule.

The transition score T_l measures how much the *selection* changes from layer l−1 to layer l; the pivot is the
first layer l ∈ [l_min, l_max] after which T stayed below τ for ``patience`` consecutive layers (else l_max).

Metrics (``pivot_metric``):

* ``"topk_jaccard"`` (default): T_l = 1 − Jaccard(TopK(C_l), TopK(C_{l−1})) of the running centrality, with K
  the real number of scored tokens the propagation set takes if the pivot fires at layer l
  (|P_l| − sinks − window): the fraction of the *selection* that firing one layer later would change.
* ``"js"``: T_l = JS(ĉ_l ‖ ĉ_{l−1}) between the *single-layer* head-merged in-degree distributions of
  consecutive layers (natural log, ≤ ln 2). Small T means layer l attends to the same structure as layer l−1, so
  further layers add little new information to the accumulated centrality.
* ``"kl"``: KL(ĉ_l ‖ ĉ_{l−1}) of the same single-layer distributions.
* ``"entropy"``: T_l = H̃_{l−1} − H̃_l; stable once T_l < ½·max_{m<l} T_m (after the largest entropy drop).
* ``"js_running"``: the first draft's rule, JS of consecutive *running* centralities p_l = C_l/ΣC_l. Its drift
  shrinks like 1/(l+1)² whatever the attention does (p_l is a running mean), so with τ = 0.02 it fires at l_min
  on every input; kept only to reproduce that behaviour.

With B > 1 the batch shares one pivot (the residual stream is gathered to one |P| for the whole batch): T_l is
the batch mean. :func:`pivot_histogram` counts pivots over many prefill calls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from structkv.centrality import js_divergence, kl_divergence, topk_jaccard_distance
from structkv.errors import PressConfigError

METRICS = ("js", "kl", "topk_jaccard", "entropy", "js_running")

#: τ per metric: the median transition score over candidate layers [l_min−1, l_max] on real traces of
#: SmolLM2-135M-Instruct (30 layers, 15 contexts of 1.1–1.4k tokens; README "Calibrating τ"); ``js_running``
#: keeps the first draft's 0.02; ``entropy`` ignores τ (relative rule)
DEFAULT_TAU = {"topk_jaccard": 0.04, "js": 0.045, "kl": 0.19, "entropy": 0.0, "js_running": 0.02}


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


def _dist(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum(-1, keepdim=True).clamp_min(1e-12)


@dataclass
class PivotDetector:
    """Feed one layer at a time with :meth:`step`; it returns True at the layer where the pivot fires.

    Every metric is computed and recorded in :attr:`trace` at every layer (so one run shows all of them);
    only ``metric`` decides. ``fired_at`` is the pivot, ``reason`` why it fired: ``"stable"`` (T < τ for
    ``patience`` layers) or ``"l_max"`` (never stable in range: the fallback).
    """

    n_layers: int
    l_min: int
    l_max: int
    metric: str = "topk_jaccard"
    tau: float = 0.04
    patience: int = 2
    trace: list[dict[str, Any]] = field(default_factory=list)
    fired_at: int | None = None
    reason: str | None = None
    _below: int = 0
    _t_max: float = 0.0
    _prev: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise PressConfigError(f"pivot_metric must be one of {METRICS}, got {self.metric!r}")

    def scores(
        self, c_hat: torch.Tensor, centrality: torch.Tensor, entropy: float, k: int
    ) -> dict[str, float]:
        """Every transition score of this layer against the previous one (inf at the first layer)."""
        prev = self._prev
        if not prev:
            return {m: math.inf for m in METRICS}
        c_hat_prev, c_prev = prev["c_hat"], prev["C"]
        k = max(1, min(int(k), centrality.shape[-1]))
        return {
            "js": float(js_divergence(c_hat, c_hat_prev).mean()),
            "kl": float(kl_divergence(c_hat, c_hat_prev).mean()),
            "topk_jaccard": float(topk_jaccard_distance(centrality, c_prev, k).mean()),
            "entropy": prev["entropy"] - entropy,
            "js_running": float(js_divergence(_dist(centrality), _dist(c_prev)).mean()),
        }

    def step(
        self,
        layer: int,
        c_hat: torch.Tensor,
        centrality: torch.Tensor,
        entropy: float,
        k: int = 16,
    ) -> bool:
        """Record layer ``layer``; True when l* = ``layer``.

        Args:
            c_hat: ĉ_l (B, n), this layer's head-merged in-degree as a distribution.
            centrality: C_l (B, n), the running centrality after this layer.
            entropy: H̃_l, the mean normalised window-attention entropy of this layer.
            k: K for ``topk_jaccard``: scored tokens the propagation set takes if the pivot fires here.
        """
        s = self.scores(c_hat, centrality, entropy, k)
        t = s[self.metric]
        if self.metric == "entropy":
            stable = math.isfinite(t) and self._t_max > 0 and t < 0.5 * self._t_max
            if math.isfinite(t):
                self._t_max = max(self._t_max, t)
        else:
            stable = math.isfinite(t) and t < self.tau
        self._below = self._below + 1 if stable else 0
        fire = False
        if self.fired_at is None and layer >= self.l_min:
            if self._below >= self.patience:
                fire, self.reason = True, "stable"
            elif layer >= self.l_max:
                fire, self.reason = True, "l_max"
        self.trace.append(
            {
                "layer": layer,
                "entropy": entropy,
                "drift": s["js_running"],
                **{f"T_{m}": v for m, v in s.items()},
                "transition": t,
                "stable": bool(stable),
                "pivot": fire,
            }
        )
        if fire:
            self.fired_at = layer
        self._prev = {"c_hat": c_hat, "C": centrality.clone(), "entropy": entropy}
        return fire


def calibrate_tau(transitions: Sequence[float], quantile: float = 0.5) -> float:
    """τ = the ``quantile`` of transition scores observed at candidate pivot layers on real traces.

    With the median (default), a layer counts as "stable" when its selection changes less than it does at a
    typical candidate layer of the calibration set; patience then asks for two such layers in a row.
    """
    vals = torch.tensor([float(t) for t in transitions if math.isfinite(float(t))])
    if vals.numel() == 0:
        raise PressConfigError("calibrate_tau needs at least one finite transition score, got none")
    if not 0.0 <= quantile <= 1.0:
        raise PressConfigError(f"quantile must be in [0, 1], got {quantile}")
    return float(vals.quantile(quantile))


def pivot_histogram(
    items: Iterable[int | Mapping[str, Any] | Any | None], n_layers: int | None = None
) -> dict[int | None, int]:
    """Count pivot layers over many prefill calls: {layer: count} (ascending; ``None`` = no pivot).

    ``items`` may hold ints, ``PrefillResult``s, or stats dicts (``press.last_stats``,
    ``PrefillResult.stats``). With ``n_layers``, every layer 0..L−2 is listed, zeros included.
    """
    counts: Counter = Counter()
    for it in items:
        if isinstance(it, Mapping):
            p = it.get("pivot_layer")
        elif hasattr(it, "pivot_layer"):
            p = it.pivot_layer
        elif it is None or isinstance(it, int):
            p = it
        else:
            raise TypeError(
                f"pivot_histogram expects ints, stats dicts or PrefillResults, got {type(it).__name__}"
            )
        counts[None if p is None else int(p)] += 1
    keys = sorted(k for k in counts if k is not None)
    if n_layers is not None:
        keys = sorted(set(keys) | set(range(max(0, n_layers - 1))))
    out: dict[int | None, int] = {k: counts.get(k, 0) for k in keys}
    if counts.get(None):
        out[None] = counts[None]
    return out


def format_histogram(hist: Mapping[int | None, int]) -> str:
    """One line, e.g. ``"l2:5 l3:12 l4:3"`` (for bench tables and logs)."""
    return " ".join(f"l{k}:{v}" if k is not None else f"none:{v}" for k, v in hist.items() if v)


@dataclass
class ContextTrace:
    """What StructKV saw in one context (``structkv trace``): pivot, per-layer trace and the top hubs.

    ``hubs`` holds, best first, ``{"position", "token_id", "centrality", "per_layer", "pivot_rank",
    "propagated"}``: ``centrality`` is the token's share of C_{l*} (global in-degree up to the pivot, summing to 1
    over the scored positions), ``per_layer`` its ĉ_l at every layer l ≤ l*, ``pivot_rank`` its 1-based rank by the
    pivot layer's own score ĉ_{l*} (a high rank number = dormant at the pivot, kept only by GIC), ``propagated``
    whether it is in P.
    """

    context_length: int
    pivot_layer: int | None
    pivot_reason: str | None
    trace: list[dict[str, Any]]
    hubs: list[dict[str, Any]]
    stats: dict[str, Any]


def trace_context(
    model: torch.nn.Module, input_ids: torch.Tensor, press: Any = None, top_k: int = 10
) -> ContextTrace:
    """Prefill ``input_ids`` (1, N) under a StructKV press (default ``StructKVPress()``) and return the top-``top_k``
    hubs of the global in-degree centrality C_{l*} with the per-layer trace.

    Raises:
        PressConfigError: ``press`` is not a StructKVPress, ``input_ids`` is not one row, ``top_k`` < 1, or the
            context was too short to be scored (the press skipped it: see ``stats["skipped"]``).
    """
    from structkv.generation import prefill
    from structkv.presses.structkv import StructKVPress

    press = StructKVPress() if press is None else press
    if not isinstance(press, StructKVPress):
        raise PressConfigError(f"trace needs a StructKVPress, got {type(press).__name__}")
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise PressConfigError(
            f"trace takes one context, input_ids (1, N); got {tuple(input_ids.shape)}"
        )
    if top_k < 1:
        raise PressConfigError(f"top_k must be >= 1, got {top_k}")
    res = prefill(model, input_ids, press)
    stats = {k: v for k, v in res.stats.items() if not isinstance(v, torch.Tensor)}
    if res.stats.get("skipped"):
        raise PressConfigError(f"the context was not scored: {res.stats['skipped']}")
    c = press.centrality.C[0].float()
    share = c / c.sum().clamp_min(1e-12)
    pivot = res.pivot_layer
    layers = sorted(press._c_hat)
    local = press._c_hat[layers[-1]][0]
    order = torch.argsort(local, descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, order.numel() + 1, device=order.device)
    kept = set(res.kept_indices.get(-1, torch.empty(1, 0, dtype=torch.long))[0].tolist())
    k = min(top_k, int((share > 0).sum()))
    hubs = []
    for j in share.topk(k).indices.tolist():
        hubs.append(
            {
                "position": j,
                "token_id": int(input_ids[0, j]),
                "centrality": float(share[j]),
                "per_layer": [float(press._c_hat[m][0, j]) for m in layers],
                "pivot_rank": int(rank[j]),
                "propagated": j in kept,
            }
        )
    return ContextTrace(
        context_length=int(input_ids.shape[1]),
        pivot_layer=pivot,
        pivot_reason=res.stats.get("pivot_reason"),
        trace=list(res.stats.get("trace", [])),
        hubs=hubs,
        stats=stats,
    )
