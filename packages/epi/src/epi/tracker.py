"""Online gradient importance with EMA smoothing and layer-wise normalisation (spec §2.1–2.3).

Pure torch: no transformers dependency.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from epi.config import EPIConfig
from epi.errors import (
    MissingTaskIdError,
    NoParametersMatchedError,
    PeftTargetError,
    ShardedParametersError,
    StateMemoryError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ParameterImportanceTracker",
    "TaskKey",
    "estimate_state_bytes",
    "importance_score",
    "normalize_scores",
    "select_parameters",
]

#: a task id (``None`` = the pooled buffer)
TaskKey = int | None


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") or type(model).__name__.startswith("Peft")


def _is_sharded(p: Tensor) -> bool:
    """DeepSpeed ZeRO-3 (``ds_id``), FSDP flat parameters / DTensor shards."""
    return (
        hasattr(p, "ds_id")
        or hasattr(p, "ds_numel")
        or type(p).__name__ in ("FlatParameter", "DTensor")
        or getattr(p, "_is_flat_param", False)
    )


def select_parameters(model: nn.Module, config: EPIConfig) -> dict[str, nn.Parameter]:
    """The parameters EPI tracks: trainable (``requires_grad``), matched by ``include`` (if given) and
    not by ``exclude``. With peft only the trainable adapter tensors (``lora_A``, ``lora_B``,
    ``modules_to_save``) qualify.

    Raises:
        PeftTargetError: ``target="base"`` on a peft model, or ``include`` matches frozen base weights.
        NoParametersMatchedError: nothing left (the message lists candidate names).
        ShardedParametersError: ZeRO-3 / FSDP sharded parameters.
    """
    named = list(model.named_parameters())
    peft = _is_peft(model)
    if peft and config.target == "base":
        raise PeftTargetError(
            'target="base" on a peft model: base weights are frozen and get no gradients; expected '
            'target="trainable" (the adapter tensors lora_A / lora_B / modules_to_save)'
        )
    inc = [re.compile(p) for p in (config.include or [])]
    exc = [re.compile(p) for p in (config.exclude or [])]

    def matched(name: str) -> bool:
        if inc and not any(r.search(name) for r in inc):
            return False
        return not any(r.search(name) for r in exc)

    if peft and inc:
        frozen_hits = [n for n, p in named if not p.requires_grad and matched(n)]
        if frozen_hits and config.include is not None:
            raise PeftTargetError(
                f"include={config.include} matches {len(frozen_hits)} frozen base weight(s) of a peft model "
                f"(e.g. {frozen_hits[:3]}); base weights get no gradients — target the adapter tensors "
                "(e.g. include=['lora_'])"
            )
    out = {n: p for n, p in named if p.requires_grad and matched(n)}
    if not out:
        trainable = [n for n, p in named if p.requires_grad]
        raise NoParametersMatchedError(
            f"no trainable parameter matched include={config.include} exclude={config.exclude}; "
            f"{len(trainable)} trainable candidates, e.g. {trainable[:8]}"
        )
    sharded = [n for n, p in out.items() if _is_sharded(p)]
    if sharded:
        raise ShardedParametersError(
            f"{len(sharded)} tracked parameter(s) are sharded/flattened (DeepSpeed ZeRO-3 or FSDP), e.g. "
            f"{sharded[:3]}; epi v1 needs whole parameters (DDP or ZeRO-1/2 work)"
        )
    return out


def estimate_state_bytes(
    params: Mapping[str, Tensor] | Iterable[Tensor], config: EPIConfig, n_tasks: int = 1
) -> int:
    """Bytes of EPI state: one EMA buffer per tracked task (``state_dtype``), a pending score buffer
    while gradients are captured before clipping, and one bool per element per mask (+ the union)."""
    tensors = params.values() if isinstance(params, Mapping) else params
    n = sum(int(t.numel()) for t in tensors)
    item = torch.empty((), dtype=config.state_dtype).element_size()
    n_buffers = 1 if config.track == "pooled" else max(1, n_tasks)
    masks = n * (n_buffers + 1)
    return n * item * (n_buffers + 1) + masks


def importance_score(param: Tensor, grad: Tensor, kind: str) -> Tensor:
    """s_t (spec §2.1) in fp32: ``"taylor"`` |θ·g|, ``"grad_abs"`` |g|, ``"fisher"`` g²."""
    g = grad.detach().float()
    if kind == "taylor":
        return (param.detach().float() * g).abs_()
    if kind == "grad_abs":
        return g.abs()
    if kind == "fisher":
        return g * g
    raise ValueError(f"importance must be taylor, grad_abs or fisher, got {kind!r}")


def normalize_scores(x: Tensor, kind: str, eps: float) -> Tensor:
    """Per-tensor normalisation Î (spec §2.3): ``layer_mean`` I / (mean I + ε) so a large-magnitude layer
    does not monopolise a global top-p; ``zscore`` (I − mean) / (std + ε); ``minmax``; ``none``."""
    x = x.float()
    if kind == "layer_mean":
        return x / (x.mean() + eps)
    if kind == "zscore":
        std = x.std(unbiased=False) if x.numel() > 1 else x.new_zeros(())
        return (x - x.mean()) / (std + eps)
    if kind == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo + eps)
    if kind == "none":
        return x
    raise ValueError(f"normalization must be layer_mean, zscore, minmax or none, got {kind!r}")


class ParameterImportanceTracker:
    """EMA of per-element gradient importance, one buffer per task (or one pooled buffer).

    ``I_t^k = β I_{t-1}^k + (1 − β) s_t^k`` with I_0 = 0 (spec §2.2). Buffers live on each parameter's
    device in ``config.state_dtype``; a task id not seen before gets fresh buffers (logged).

    Args:
        params: ``{name: parameter}`` to track (see :func:`select_parameters`).
        config: the :class:`~epi.config.EPIConfig`.
    """

    def __init__(self, params: Mapping[str, nn.Parameter], config: EPIConfig) -> None:
        if not params:
            raise NoParametersMatchedError("ParameterImportanceTracker got no parameters to track")
        self.params: dict[str, nn.Parameter] = dict(params)
        self.config = config
        self.ema: dict[TaskKey, dict[str, Tensor]] = {}
        self.updates: dict[TaskKey, int] = {}
        self.skipped_nonfinite = 0
        self._check_memory(1)
        est = estimate_state_bytes(self.params, config, 1)
        logger.info(
            "epi: tracking %d tensors / %d elements; estimated state %.3f GB per tracked task",
            len(self.params),
            self.numel,
            est / 1e9,
        )

    @property
    def numel(self) -> int:
        return sum(int(p.numel()) for p in self.params.values())

    @property
    def state_bytes(self) -> int:
        """Estimated EPI state for the tasks registered so far (see :func:`estimate_state_bytes`)."""
        return estimate_state_bytes(self.params, self.config, max(1, len(self.ema)))

    @property
    def tasks(self) -> list[TaskKey]:
        return list(self.ema)

    def key(self, task_id: TaskKey) -> TaskKey:
        """The buffer key of ``task_id``: None when pooled; raises when per-task and None."""
        if self.config.track == "pooled":
            return None
        if task_id is None:
            raise MissingTaskIdError(
                'track="per_task" needs the task id of every batch, got None: add a task id column '
                "(task_key, default 'task_id'), keep it through the collator (epi.TaskIdCollator) and "
                "sample task-homogeneous windows (epi.TaskHomogeneousBatchSampler) — or use track='pooled'"
            )
        return int(task_id)

    def _check_memory(self, n_tasks: int) -> None:
        limit = self.config.max_state_gb
        est = estimate_state_bytes(self.params, self.config, n_tasks)
        if limit is not None and est > limit * 1e9:
            raise StateMemoryError(
                f"estimated EPI state {est / 1e9:.1f} GB for {n_tasks} task(s) exceeds max_state_gb={limit}: "
                "use track='pooled', state_dtype=torch.bfloat16, or include/exclude filters "
                "(e.g. only MLP / attention matrices)"
            )

    def _buffers(self, key: TaskKey) -> dict[str, Tensor]:
        if key not in self.ema:
            if self.ema:
                logger.info("epi: new task id %r, registering importance buffers", key)
            self._check_memory(len(self.ema) + 1)
            dt = self.config.state_dtype
            self.ema[key] = {
                n: torch.zeros(p.shape, dtype=dt, device=p.device) for n, p in self.params.items()
            }
            self.updates[key] = 0
        return self.ema[key]

    def scores_from_grads(self) -> dict[str, Tensor] | None:
        """s_t of every tracked parameter with a gradient (None grads skipped); None when any gradient is
        non-finite (the step is skipped, as a loss scaler would)."""
        out: dict[str, Tensor] = {}
        for n, p in self.params.items():
            if p.grad is None:
                continue
            if not bool(torch.isfinite(p.grad).all()):
                self.skipped_nonfinite += 1
                logger.warning(
                    "epi: non-finite gradient in %s; importance update skipped this step", n
                )
                return None
            out[n] = importance_score(p, p.grad, self.config.importance)
        return out

    def update(self, scores: Mapping[str, Tensor], task_id: TaskKey = None) -> None:
        """Fold precomputed scores s_t into the EMA of ``task_id`` (parameters absent from ``scores`` keep
        their EMA untouched: a None gradient is skipped, not zero-filled)."""
        key = self.key(task_id)
        bufs = self._buffers(key)
        beta = self.config.ema_beta
        for n, s in scores.items():
            b = bufs[n]
            if b.dtype == torch.float32:
                b.mul_(beta).add_(s.to(b.device), alpha=1.0 - beta)
            else:
                b.copy_(b.float().mul_(beta).add_(s.to(b.device), alpha=1.0 - beta))
        self.updates[key] += 1

    def accumulate(self, task_id: TaskKey = None) -> bool:
        """Read ``p.grad`` of every tracked parameter into the EMA of ``task_id``. Returns False when the
        step was skipped (a non-finite gradient)."""
        self.key(task_id)  # validate before any work
        scores = self.scores_from_grads()
        if scores is None:
            return False
        self.update(scores, task_id)
        return True

    def raw(self, task_id: TaskKey = None) -> dict[str, Tensor]:
        """The EMA buffers I_t of ``task_id`` (zeros if never updated)."""
        return self._buffers(self.key(task_id))

    def normalized(self, task_id: TaskKey = None) -> dict[str, Tensor]:
        """Î_t: the EMA of ``task_id`` normalised per tensor (``config.normalization``), fp32."""
        return {
            n: normalize_scores(t, self.config.normalization, self.config.epsilon)
            for n, t in self.raw(task_id).items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": {k: {n: t.detach().clone() for n, t in b.items()} for k, b in self.ema.items()},
            "updates": dict(self.updates),
            "skipped_nonfinite": self.skipped_nonfinite,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [n for b in state["ema"].values() for n in self.params if n not in b]
        if missing:
            raise ValueError(f"EPI state lacks tracked parameters, e.g. {missing[:3]}")
        self.ema = {
            k: {
                n: b[n].to(device=p.device, dtype=self.config.state_dtype).clone()
                for n, p in self.params.items()
            }
            for k, b in state["ema"].items()
        }
        self.updates = dict(state["updates"])
        self.skipped_nonfinite = int(state.get("skipped_nonfinite", 0))
