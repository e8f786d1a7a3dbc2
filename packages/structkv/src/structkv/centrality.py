"""Scores over tokens: pooling, layer normalisation, Global In-Degree Centrality (spec §2.1–2.2), divergences."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EPS = 1e-12


def avg_pool(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """1-D average pooling along the last axis, stride 1, same padding (zeros counted, as SnapKV/kvpress)."""
    if kernel_size <= 1:
        return x
    shape = x.shape
    y = F.avg_pool1d(x.reshape(-1, 1, shape[-1]), kernel_size, stride=1, padding=kernel_size // 2)
    return y[..., : shape[-1]].reshape(shape)


def protected_mask(n: int, n_sink: int, window: int, device=None) -> torch.Tensor:
    """Bool (n,): True at the first ``n_sink`` and last ``window`` positions (always kept, never scored)."""
    m = torch.zeros(n, dtype=torch.bool, device=device)
    m[: min(n_sink, n)] = True
    if window > 0:
        m[max(0, n - window) :] = True
    return m


def normalise_layer(c: torch.Tensor, protect: torch.Tensor) -> torch.Tensor:
    """ĉ_l: the head-merged in-degree c (B, n) as a distribution over the unprotected positions."""
    c = c.masked_fill(protect, 0.0).clamp_min(0.0)
    return c / c.sum(dim=-1, keepdim=True).clamp_min(_EPS)


def zscale(x: torch.Tensor) -> torch.Tensor:
    """z(x) = x / max(x) along the last axis (spec §2.5)."""
    return x / x.amax(dim=-1, keepdim=True).clamp_min(_EPS)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence (natural log) along the last axis; inputs are renormalised."""
    p = p / p.sum(-1, keepdim=True).clamp_min(_EPS)
    q = q / q.sum(-1, keepdim=True).clamp_min(_EPS)
    m = 0.5 * (p + q)
    return 0.5 * (_kl(p, m) + _kl(q, m))


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """KL(p‖q) (natural log) along the last axis, q smoothed by ``eps`` so it stays finite."""
    p = p / p.sum(-1, keepdim=True).clamp_min(_EPS)
    q = (q + eps) / (q + eps).sum(-1, keepdim=True)
    return _kl(p, q)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    t = torch.where(p > 0, p * (torch.log(p.clamp_min(1e-38)) - torch.log(q.clamp_min(1e-38))), 0.0)
    return t.sum(-1)


def topk_jaccard_distance(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """1 − |top-k(a) ∩ top-k(b)| / |top-k(a) ∪ top-k(b)| along the last axis."""
    k = max(1, min(k, a.shape[-1]))
    ia = torch.zeros_like(a, dtype=torch.bool).scatter_(-1, a.topk(k, dim=-1).indices, True)
    ib = torch.zeros_like(b, dtype=torch.bool).scatter_(-1, b.topk(k, dim=-1).indices, True)
    inter = (ia & ib).sum(-1).float()
    union = (ia | ib).sum(-1).float()
    return 1.0 - inter / union


def layer_weight(scheme: str, layer: int, entropy: float) -> float:
    """ω_m for ``layer_weighting``: uniform 1, linear m+1, sharpness 1 − H̃_m."""
    if scheme == "uniform":
        return 1.0
    if scheme == "linear":
        return float(layer + 1)
    if scheme == "sharpness":
        return max(0.0, 1.0 - float(entropy))
    raise ValueError(f"unknown layer_weighting {scheme!r}")


class GlobalCentrality:
    """Running C_l(j) = Σ_{m≤l} ω_m ĉ_m(j) over the N context positions (spec §2.2)."""

    def __init__(self, n: int, n_sink: int, window: int, weighting: str = "uniform"):
        self.n, self.n_sink, self.window, self.weighting = n, n_sink, window, weighting
        self.C: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None

    def update(self, layer: int, indeg: torch.Tensor, entropy: float) -> torch.Tensor:
        """Add layer ``layer``'s (pooled) in-degree (B, H_kv, n). Returns ĉ_l (B, n)."""
        protect = protected_mask(self.n, self.n_sink, self.window, indeg.device)
        c_hat = normalise_layer(indeg.float().mean(dim=1), protect)
        w = layer_weight(self.weighting, layer, entropy)
        self.prev = None if self.C is None else self.C.clone()
        self.C = w * c_hat if self.C is None else self.C + w * c_hat
        return c_hat

    def distribution(self) -> torch.Tensor:
        assert self.C is not None
        return self.C / self.C.sum(-1, keepdim=True).clamp_min(_EPS)


def ln2() -> float:
    return math.log(2.0)
