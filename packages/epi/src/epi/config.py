"""The one configuration dataclass of epi (spec §3)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch

from epi.errors import EPIConfigError, EPIWarning

__all__ = ["EPIConfig"]

Importance = Literal["taylor", "grad_abs", "fisher"]
Normalization = Literal["layer_mean", "zscore", "minmax", "none"]
Selection = Literal["global", "per_layer"]
Mode = Literal["freeze", "freeze_other_tasks"]
Track = Literal["pooled", "per_task"]
Capture = Literal["auto", "manual"]
Target = Literal["trainable", "base"]

_CHOICES = {
    "importance": ("taylor", "grad_abs", "fisher"),
    "normalization": ("layer_mean", "zscore", "minmax", "none"),
    "selection": ("global", "per_layer"),
    "mode": ("freeze", "freeze_other_tasks"),
    "track": ("pooled", "per_task"),
    "capture": ("auto", "manual"),
    "target": ("trainable", "base"),
}


@dataclass
class EPIConfig:
    """Evolving parameter isolation settings.

    Attributes:
        isolation_ratio: p, the fraction of tracked elements isolated per mask (per task), in (0, 1).
        update_interval: T_update, optimizer steps between mask rebuilds (≥ 1).
        warmup_steps: T_warm, steps before the first mask (None = ``update_interval``); nothing is
            isolated before it.
        ema_beta: β of ``I_t = β I_{t-1} + (1-β) s_t`` (spec §2.2), in [0, 1).
        importance: the score s_t: ``"taylor"`` |θ·g| (default), ``"grad_abs"`` |g|, ``"fisher"`` g².
        normalization: per-tensor normalisation before ranking (§2.3): ``"layer_mean"`` I / (mean I + ε),
            ``"zscore"``, ``"minmax"`` or ``"none"``.
        selection: ``"global"`` top-p over all tracked elements, or ``"per_layer"`` top-p in each tensor.
        mode: ``"freeze"`` (default: isolated elements frozen for every batch) or ``"freeze_other_tasks"``
            (an element owned by task k is frozen on windows of other tasks; needs ``track="per_task"``).
        release_factor: hysteresis (≥ 1): an isolated element is released only when it falls out of the
            top ``p · release_factor``; 1 = no hysteresis (exactly ⌈p·n⌉ isolated per task).
        track: ``"pooled"`` (default: one EMA buffer) or ``"per_task"`` (one buffer per task id).
        state_dtype: dtype of the EMA buffers (float32 or bfloat16).
        include / exclude: regexes (``re.search``) on parameter names; exclude wins.
        capture: ``"auto"`` reads gradients on every optimizer step (before clipping under
            ``Trainer``); ``"manual"`` only when :meth:`EvolvingIsolation.after_backward` is called.
        target: ``"trainable"`` (default) or ``"base"`` (invalid with peft: base weights have no grads).
        max_state_gb: error when the estimated EPI state exceeds this many GB (None = no limit).
        epsilon: ε of the normalisation.
        seed: seed of :class:`~epi.isolation.RandomIsolation` masks.
    """

    isolation_ratio: float = 0.01
    update_interval: int = 100
    warmup_steps: int | None = None
    ema_beta: float = 0.9
    importance: Importance = "taylor"
    normalization: Normalization = "layer_mean"
    selection: Selection = "global"
    mode: Mode = "freeze"
    release_factor: float = 1.0
    track: Track = "pooled"
    state_dtype: torch.dtype = torch.float32
    include: list[str] | None = None
    exclude: list[str] | None = field(default_factory=lambda: ["embed_tokens", "lm_head"])
    capture: Capture = "auto"
    target: Target = "trainable"
    max_state_gb: float | None = 80.0
    epsilon: float = 1e-12
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def warmup(self) -> int:
        """T_warm (``warmup_steps`` or ``update_interval``)."""
        return self.update_interval if self.warmup_steps is None else self.warmup_steps

    def validate(self) -> None:
        """Raise :class:`EPIConfigError` for out-of-range settings; warn for risky ones."""
        p = self.isolation_ratio
        if not isinstance(p, (int, float)) or not (0.0 < float(p) < 1.0) or math.isnan(p):
            raise EPIConfigError(f"isolation_ratio must be in (0, 1), got {p!r}")
        if p > 0.5:
            warnings.warn(
                f"isolation_ratio={p} > 0.5: most tracked parameters will be frozen and plasticity lost",
                EPIWarning,
                stacklevel=3,
            )
        if not isinstance(self.update_interval, int) or self.update_interval < 1:
            raise EPIConfigError(
                f"update_interval must be an int ≥ 1, got {self.update_interval!r}"
            )
        if self.warmup_steps is not None and (
            not isinstance(self.warmup_steps, int) or self.warmup_steps < 0
        ):
            raise EPIConfigError(
                f"warmup_steps must be None or an int ≥ 0, got {self.warmup_steps!r}"
            )
        if not (0.0 <= self.ema_beta < 1.0):
            raise EPIConfigError(f"ema_beta must be in [0, 1), got {self.ema_beta!r}")
        if self.release_factor < 1.0:
            raise EPIConfigError(
                f"release_factor must be ≥ 1 (1 = no hysteresis), got {self.release_factor!r}"
            )
        for name, choices in _CHOICES.items():
            got = getattr(self, name)
            if got not in choices:
                raise EPIConfigError(f"{name} must be one of {choices}, got {got!r}")
        if self.state_dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise EPIConfigError(
                f"state_dtype must be torch.float32, torch.bfloat16 or torch.float16, got {self.state_dtype!r}"
            )
        if self.mode == "freeze_other_tasks" and self.track != "per_task":
            raise EPIConfigError(
                'mode="freeze_other_tasks" needs per-task masks: set track="per_task", got track="pooled"'
            )
        if self.max_state_gb is not None and self.max_state_gb <= 0:
            raise EPIConfigError(f"max_state_gb must be > 0 or None, got {self.max_state_gb!r}")
        for name in ("include", "exclude"):
            pats = getattr(self, name)
            if pats is not None and (
                isinstance(pats, str) or not all(isinstance(x, str) for x in pats)
            ):
                raise EPIConfigError(
                    f"{name} must be a list of regex strings or None, got {pats!r}"
                )
