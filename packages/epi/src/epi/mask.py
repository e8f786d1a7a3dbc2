"""Isolation masks: exact top-p selection with deterministic ties, hysteresis, drift metrics (spec §2.4)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["IsolationMask", "top_p_global", "top_p_per_layer", "top_k_flat"]


def top_k_flat(x: Tensor, k: int) -> Tensor:
    """Bool mask of exactly ``k`` largest entries of the 1-D ``x``; ties at the threshold go to the lowest
    indices (deterministic). NaN counts as the smallest value."""
    n = x.numel()
    out = torch.zeros(n, dtype=torch.bool, device=x.device)
    if k <= 0:
        return out
    if k >= n:
        return out.fill_(True)
    x = torch.nan_to_num(x.float(), nan=-math.inf)
    thr = torch.kthvalue(x.cpu(), n - k + 1).values.to(x.device)  # k-th largest
    above = x > thr
    need = k - int(above.sum())
    eq = (x == thr).nonzero().flatten()[:need]
    out |= above
    out[eq] = True
    return out


def _split(flat: Tensor, shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    out, i = {}, 0
    for n, s in shapes.items():
        m = math.prod(s)
        out[n] = flat[i : i + m].view(s)
        i += m
    return out


def top_p_global(scores: Mapping[str, Tensor], p: float) -> dict[str, Tensor]:
    """Top ⌈p·n⌉ elements over all tensors together (n = total elements)."""
    flat = torch.cat([s.detach().float().flatten().cpu() for s in scores.values()])
    k = math.ceil(p * flat.numel())
    m = _split(top_k_flat(flat, k), {n: s.shape for n, s in scores.items()})
    return {n: m[n].to(s.device) for n, s in scores.items()}


def top_p_per_layer(scores: Mapping[str, Tensor], p: float) -> dict[str, Tensor]:
    """Top ⌈p·n_t⌉ elements inside each tensor t."""
    return {
        n: top_k_flat(s.detach().flatten(), math.ceil(p * s.numel())).view(s.shape)
        for n, s in scores.items()
    }


def _count(masks: Mapping[str, Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


class IsolationMask:
    """Which elements are isolated: ``masks`` = ``{name: bool tensor}`` (True = isolated; the union over
    tasks) and, in per-task mode, ``owners`` = ``{task id: {name: bool tensor}}`` (element j owned by task k
    when ``owners[k][name][j]``).

    Args:
        masks: the union mask per parameter name.
        owners: per-task masks (None in pooled mode).
    """

    def __init__(
        self,
        masks: Mapping[str, Tensor],
        owners: Mapping[int, Mapping[str, Tensor]] | None = None,
    ) -> None:
        self.masks: dict[str, Tensor] = {n: m.bool() for n, m in masks.items()}
        self.owners: dict[int, dict[str, Tensor]] | None = (
            None
            if owners is None
            else {int(k): {n: m.bool() for n, m in v.items()} for k, v in owners.items()}
        )

    @classmethod
    def empty(cls, params: Mapping[str, Tensor]) -> IsolationMask:
        return cls(
            {n: torch.zeros(p.shape, dtype=torch.bool, device=p.device) for n, p in params.items()}
        )

    @classmethod
    def from_owners(cls, owners: Mapping[int, Mapping[str, Tensor]]) -> IsolationMask:
        """The union over tasks of per-task masks (M_t = ∪_k M^k)."""
        names = next(iter(owners.values())).keys()
        union = {n: torch.stack([o[n] for o in owners.values()]).any(0) for n in names}
        return cls(union, owners)

    @property
    def numel(self) -> int:
        return sum(int(m.numel()) for m in self.masks.values())

    def count(self) -> int:
        """Number of isolated elements."""
        return _count(self.masks)

    def density(self) -> float:
        """Isolated fraction of all tracked elements."""
        n = self.numel
        return self.count() / n if n else 0.0

    def jaccard(self, other: IsolationMask) -> float:
        """|A ∩ B| / |A ∪ B| of the isolated sets (1.0 when both are empty)."""
        inter = union = 0
        for n, a in self.masks.items():
            b = other.masks[n].to(a.device)
            inter += int((a & b).sum())
            union += int((a | b).sum())
        return 1.0 if union == 0 else inter / union

    def drift(self, previous: IsolationMask) -> dict[str, float]:
        """Drift from ``previous`` to this mask: Jaccard, #protected (newly isolated), #released."""
        prot = rel = 0
        for n, a in self.masks.items():
            b = previous.masks[n].to(a.device)
            prot += int((a & ~b).sum())
            rel += int((~a & b).sum())
        return {
            "jaccard": self.jaccard(previous),
            "protected": float(prot),
            "released": float(rel),
            "isolated": float(self.count()),
            "density": self.density(),
        }

    def frozen_for(self, task_id: int | None, mode: str) -> dict[str, Tensor]:
        """The elements frozen on a window of ``task_id``: all isolated ones in ``"freeze"`` mode; in
        ``"freeze_other_tasks"`` those owned by some task and not by ``task_id`` (spec §2.5)."""
        if mode == "freeze" or self.owners is None:
            return self.masks
        mine = self.owners.get(int(task_id)) if task_id is not None else None
        if mine is None:
            return self.masks
        return {n: m & ~mine[n] for n, m in self.masks.items()}

    def apply_to_grads(
        self, params: Mapping[str, Tensor], task_id: int | None = None, mode: str = "freeze"
    ) -> None:
        """``g_j ← 0`` on the elements frozen for ``task_id`` (None grads left alone)."""
        for n, m in self.frozen_for(task_id, mode).items():
            g = params[n].grad
            if g is not None:
                g.masked_fill_(m, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {n: m.cpu().clone() for n, m in self.masks.items()},
            "owners": None
            if self.owners is None
            else {k: {n: m.cpu().clone() for n, m in v.items()} for k, v in self.owners.items()},
        }

    def load_state_dict(
        self, state: Mapping[str, Any], device_of: Mapping[str, Tensor] | None = None
    ) -> None:
        def dev(n: str) -> Any:
            return device_of[n].device if device_of is not None else "cpu"

        self.masks = {n: m.bool().to(dev(n)) for n, m in state["masks"].items()}
        own = state.get("owners")
        self.owners = (
            None
            if own is None
            else {int(k): {n: m.bool().to(dev(n)) for n, m in v.items()} for k, v in own.items()}
        )

    def __repr__(self) -> str:
        tasks = "pooled" if self.owners is None else f"tasks={sorted(self.owners)}"
        return f"IsolationMask(isolated={self.count()}/{self.numel}, {tasks})"
