"""PropagatingPress: drops tokens from the residual stream after a pivot layer (compute reduction).

After the pivot ``l*`` fires, a forward pre-hook on every decoder layer ``l > l*`` gathers the hidden
states to the kept rows ``P`` and gathers ``position_embeddings``, ``position_ids`` and a 4-D
``attention_mask`` to the same rows — at every later layer, since the model hands each layer the same
full-length kwargs. Kept tokens keep their original RoPE positions. A ``None`` mask (sdpa) stays
``None``: post-pivot layer caches start empty, so q_len == k_len == |P| and the causal flag is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structkv.centrality import protected_mask
from structkv.presses.base import BasePress


def topk_protected(score: torch.Tensor, m: int, n_sink: int, window: int) -> torch.Tensor:
    """Sorted indices (…, m) of the top-m entries of ``score`` (…, n), sinks and window forced in."""
    n = score.shape[-1]
    prot = protected_mask(n, n_sink, window, score.device)
    s = score.float().masked_fill(prot, float("inf"))
    return s.topk(min(m, n), dim=-1).indices.sort(dim=-1).values


def _gather_seq(x: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    """Gather ``x`` along ``dim`` with per-batch indices idx (B, p); broadcasts a batch-1 ``x``."""
    b = idx.shape[0]
    if x.shape[0] != b:
        x = x.expand(b, *x.shape[1:])
    shape = [1] * x.dim()
    shape[0], shape[dim] = b, idx.shape[1]
    full = list(x.shape)
    full[dim] = idx.shape[1]
    return x.gather(dim, idx.view(shape).expand(full))


@dataclass
class PropagatingPress(BasePress):
    """Base of prefill-aware presses (GemFilter, FastKV, StructKV)."""

    compression_ratio: float = 0.9
    propagates = True

    def reset(self) -> None:
        self._keep: torch.Tensor | None = None  # (B, |P|) kept original positions, sorted
        self._pivot: int | None = None

    def _layer_pre_hook(self, layer, module, args, kwargs):
        run = self._run
        keep = getattr(self, "_keep", None)
        if run is None or keep is None or self._pivot is None or layer <= self._pivot:
            return None
        n = run.n
        if args:
            h = args[0]
        else:
            h = kwargs["hidden_states"]
        if h.shape[1] == n:
            h = _gather_seq(h, keep, 1)
        new = dict(kwargs)
        pe = kwargs.get("position_embeddings")
        if pe is not None and pe[0].shape[1] == n:
            new["position_embeddings"] = tuple(_gather_seq(t, keep, 1) for t in pe)
        pid = kwargs.get("position_ids")
        if pid is not None and pid.shape[-1] == n:
            new["position_ids"] = _gather_seq(pid.view(-1, n), keep, 1)
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 4 and mask.shape[-1] == n:
            mask = _gather_seq(mask, keep, 2)
            new["attention_mask"] = _gather_seq(mask, keep, 3)
        if args:
            return (h, *args[1:]), new
        new["hidden_states"] = h
        return args, new

    def layer_positions(self, layer: int) -> torch.Tensor:
        """Original positions layer ``layer`` processes: all N up to the pivot, P after it."""
        keep = getattr(self, "_keep", None)
        if keep is not None and self._pivot is not None and layer > self._pivot:
            return keep
        return super().layer_positions(layer)

    def kept_indices(self, n_layers: int, cache) -> dict[int, torch.Tensor]:
        """Per-layer kept positions (B, H_kv, len_l), plus key -1: the propagated set P (B, |P|)."""
        out = super().kept_indices(n_layers, cache)
        keep = getattr(self, "_keep", None)
        if keep is not None:
            out[-1] = keep
        return out

    def finish(self, stats: dict) -> None:
        stats["pivot_layer"] = self._pivot
        keep = getattr(self, "_keep", None)
        stats["propagated_tokens"] = None if keep is None else int(keep.shape[1])
