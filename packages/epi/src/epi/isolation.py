"""The orchestrator: tracking, mask rebuilds and freezing through optimizer step hooks (spec §2.4–2.6).

Freezing is done on the *inner* torch optimizer with ``register_step_pre_hook`` /
``register_step_post_hook``: before the step the gradients of frozen elements are zeroed and their values
snapshotted; after the step the values are restored, so AdamW's weight decay and warm momentum cannot move
them (bit-identical). This works in any loop and under ``transformers.Trainer`` without subclassing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from epi.config import EPIConfig
from epi.errors import EPIConfigError
from epi.mask import IsolationMask, top_p_global, top_p_per_layer
from epi.tracker import ParameterImportanceTracker, TaskKey, select_parameters

logger = logging.getLogger(__name__)

__all__ = [
    "EvolvingIsolation",
    "RandomIsolation",
    "StaticIsolation",
    "unwrap_optimizer",
    "wrap_optimizer",
]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The innermost ``torch.optim.Optimizer`` (accelerate's ``AcceleratedOptimizer`` and similar wrappers
    keep it in ``.optimizer``)."""
    opt = optimizer
    seen = 0
    while not isinstance(opt, torch.optim.Optimizer) or (
        hasattr(opt, "optimizer") and isinstance(opt.optimizer, torch.optim.Optimizer)
    ):
        inner = getattr(opt, "optimizer", None)
        if inner is None or seen > 8:
            break
        opt, seen = inner, seen + 1
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            f"expected a torch.optim.Optimizer (or a wrapper of one), got {type(optimizer).__name__}"
        )
    return opt


class EvolvingIsolation:
    """Evolving parameter isolation for any torch training loop.

    Plain loop::

        iso = EvolvingIsolation(model, EPIConfig(isolation_ratio=0.01, update_interval=100))
        opt = wrap_optimizer(torch.optim.AdamW(model.parameters()), iso)
        for batch in data:
            loss = model(**batch).loss; loss.backward()
            iso.after_backward(task_id=None)      # importance read here, before any clipping
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); opt.zero_grad()           # hooks: mask rebuild, freeze, restore

    Args:
        model: the model (a peft model tracks only its trainable adapter tensors).
        config: :class:`~epi.config.EPIConfig`.
        params: explicit ``{name: parameter}`` to track instead of :func:`~epi.tracker.select_parameters`.
    """

    #: whether masks are rebuilt every ``update_interval`` steps (False for the static baselines)
    evolving: bool = True
    #: whether importance is tracked at all
    needs_importance: bool = True

    def __init__(
        self,
        model: nn.Module,
        config: EPIConfig | None = None,
        params: Mapping[str, nn.Parameter] | None = None,
    ) -> None:
        self.config = config or EPIConfig()
        self.config.validate()
        self.params: dict[str, nn.Parameter] = (
            dict(params) if params is not None else select_parameters(model, self.config)
        )
        self.tracker = ParameterImportanceTracker(self.params, self.config)
        self.mask = IsolationMask.empty(self.params)
        self._task_masks: dict[TaskKey, dict[str, Tensor]] = {}
        self.step = 0
        self.current_task: TaskKey = None
        self.history: list[dict[str, float]] = []
        self.built = False
        self._captured = False
        self._pending: dict[str, Tensor] = {}
        self._pending_bad = False
        self._snapshots: dict[str, Tensor] = {}
        self._opt_handles: list[Any] = []
        self._grad_handles: list[Any] = []

    # ---------------------------------------------------------------- importance capture
    def after_backward(self, task_id: TaskKey = None) -> bool:
        """Read the current (accumulated, unclipped) gradients into the EMA of ``task_id`` (default
        :attr:`current_task`). Call after the last backward of a step, before clipping. Returns False when
        the step was skipped (non-finite gradient)."""
        if not self.needs_importance:
            return True
        tid = self.current_task if task_id is None else task_id
        self._captured = True
        return self.tracker.accumulate(tid)

    def attach_grad_capture(self, is_last_microbatch: Callable[[], bool]) -> None:
        """Capture importance inside backward, before clipping: a post-accumulate-grad hook on every tracked
        parameter scores the gradient when ``is_last_microbatch()`` is True (the window's gradient is then
        complete); the scores are folded into the EMA at the next optimizer step."""
        self.detach_grad_capture()
        if not self.needs_importance:
            return
        from epi.tracker import importance_score

        def make(name: str) -> Callable[[Tensor], None]:
            def hook(p: Tensor) -> None:
                if p.grad is None or not is_last_microbatch():
                    return
                if not bool(torch.isfinite(p.grad).all()):
                    self._pending_bad = True
                    return
                self._pending[name] = importance_score(p, p.grad, self.config.importance)

            return hook

        for n, p in self.params.items():
            self._grad_handles.append(p.register_post_accumulate_grad_hook(make(n)))

    def detach_grad_capture(self) -> None:
        for h in self._grad_handles:
            h.remove()
        self._grad_handles = []

    # ---------------------------------------------------------------- step protocol
    def before_optimizer_step(self, task_id: TaskKey = None) -> dict[str, float]:
        """Fold this step's importance (if not yet captured), count the step, rebuild the mask when due, then
        zero the frozen elements' gradients and snapshot their values. Returns drift stats of a rebuild."""
        tid = self.current_task if task_id is None else task_id
        if self.needs_importance and not self._captured:
            if self._pending or self._pending_bad:
                if self._pending_bad:
                    self.tracker.skipped_nonfinite += 1
                    logger.warning("epi: non-finite gradient; importance update skipped this step")
                else:
                    self.tracker.update(self._pending, tid)
            elif self.config.capture == "auto":
                self.tracker.accumulate(
                    tid
                )  # no pre-clip capture: reads the gradients as they are now
        self._pending, self._pending_bad, self._captured = {}, False, False
        self.step += 1
        stats = self.maybe_update_mask(self.step)
        self._freeze(tid)
        return stats

    def after_optimizer_step(self) -> None:
        """Restore the snapshotted values of frozen elements (undoes weight decay and momentum drift)."""
        with torch.no_grad():
            for n, (m, vals) in self._snapshots.items():
                self.params[n].data[m] = vals
        self._snapshots = {}

    def _freeze(self, task_id: TaskKey) -> None:
        self._snapshots = {}
        frozen = self.mask.frozen_for(task_id, self.config.mode)
        with torch.no_grad():
            for n, m in frozen.items():
                if not bool(m.any()):
                    continue
                p = self.params[n]
                if p.grad is not None:
                    p.grad.masked_fill_(m, 0)
                self._snapshots[n] = (m, p.data[m].clone())

    # ---------------------------------------------------------------- masks
    def due(self, step: int) -> bool:
        """Whether a mask is (re)built at ``step``: t ≥ T_warm and t % T_update == 0 (spec §2.6); static
        baselines build once."""
        if step < self.config.warmup:
            return False
        if not self.evolving:
            return not self.built
        return step % self.config.update_interval == 0 or (
            not self.built and step == self.config.warmup
        )

    def maybe_update_mask(self, step: int) -> dict[str, float]:
        """Rebuild the mask when :meth:`due`; returns the drift stats (empty dict otherwise)."""
        if not self.due(step):
            return {}
        return self.rebuild_mask(step)

    def _select(self, scores: Mapping[str, Tensor], p: float) -> dict[str, Tensor]:
        fn = top_p_global if self.config.selection == "global" else top_p_per_layer
        return fn(scores, p)

    def compute_mask(self) -> IsolationMask | None:
        """M_t from the current EMA: per task top-p of the normalised importance (with hysteresis against the
        previous mask), unioned over tasks. None when no importance was recorded yet."""
        keys = [k for k in self.tracker.tasks if self.tracker.updates.get(k, 0) > 0]
        if not keys:
            return None
        p, r = self.config.isolation_ratio, self.config.release_factor
        per_task: dict[TaskKey, dict[str, Tensor]] = {}
        for k in keys:
            norm = self.tracker.normalized(k)
            sel = self._select(norm, p)
            prev = self._task_masks.get(k)
            if r > 1.0 and prev is not None:
                keep = self._select(norm, min(1.0, p * r))
                sel = {n: sel[n] | (prev[n] & keep[n]) for n in sel}
            per_task[k] = sel
        self._task_masks = per_task
        if self.config.track == "pooled":
            return IsolationMask(per_task[None])
        return IsolationMask.from_owners(per_task)  # type: ignore[arg-type]

    def rebuild_mask(self, step: int | None = None) -> dict[str, float]:
        """Build M_t now, replace the current mask and log drift (Jaccard, #protected, #released)."""
        new = self.compute_mask()
        if new is None:
            logger.warning("epi: mask rebuild at step %s skipped: no importance recorded yet", step)
            return {}
        stats = new.drift(self.mask)
        stats["step"] = float(self.step if step is None else step)
        self.mask = new
        self.built = True
        self.history.append(stats)
        logger.info(
            "epi step %d: mask jaccard %.3f, protected %d, released %d, density %.4f",
            stats["step"],
            stats["jaccard"],
            stats["protected"],
            stats["released"],
            stats["density"],
        )
        return stats

    @property
    def masks(self) -> dict[str, Tensor]:
        """The current ``{parameter name: bool tensor}`` (True = isolated)."""
        return self.mask.masks

    # ---------------------------------------------------------------- optimizer hooks
    def attach(self, optimizer: Any) -> torch.optim.Optimizer:
        """Register the step pre/post hooks on the inner optimizer of ``optimizer``; returns it."""
        inner = unwrap_optimizer(optimizer)
        ids = {id(p) for g in inner.param_groups for p in g["params"]}
        missing = [n for n, p in self.params.items() if id(p) not in ids]
        if missing:
            raise EPIConfigError(
                f"{len(missing)} tracked parameter(s) are not in the optimizer (e.g. {missing[:3]}); "
                "expected the optimizer to hold every tracked parameter"
            )
        self.detach()

        def pre(opt: Any, args: Any, kwargs: Any) -> None:
            self.before_optimizer_step()

        def post(opt: Any, args: Any, kwargs: Any) -> None:
            self.after_optimizer_step()

        self._opt_handles = [inner.register_step_pre_hook(pre), inner.register_step_post_hook(post)]
        return inner

    def detach(self) -> None:
        """Remove the optimizer hooks (and the gradient capture hooks)."""
        for h in self._opt_handles:
            h.remove()
        self._opt_handles = []
        self.detach_grad_capture()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume: EMA buffers, masks (union, per task, hysteresis state),
        step counter and drift history."""
        return {
            "kind": type(self).__name__,
            "step": self.step,
            "built": self.built,
            "tracker": self.tracker.state_dict(),
            "mask": self.mask.state_dict(),
            "task_masks": {
                k: {n: m.cpu().clone() for n, m in v.items()} for k, v in self._task_masks.items()
            },
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.built = bool(state["built"])
        self.tracker.load_state_dict(state["tracker"])
        self.mask.load_state_dict(state["mask"], self.params)
        self._task_masks = {
            k: {n: m.to(self.params[n].device) for n, m in v.items()}
            for k, v in state["task_masks"].items()
        }
        self.history = list(state["history"])


class StaticIsolation(EvolvingIsolation):
    """CPI-FT-style static isolation: the mask is built once at step T_warm (or when
    :meth:`rebuild_mask` is called, e.g. at the end of a task) and never updated."""

    evolving = False

    def after_backward(self, task_id: TaskKey = None) -> bool:
        if self.built:
            return True
        return super().after_backward(task_id)

    def before_optimizer_step(self, task_id: TaskKey = None) -> dict[str, float]:
        if self.built:
            self._captured = True  # importance no longer needed
        return super().before_optimizer_step(task_id)


class RandomIsolation(EvolvingIsolation):
    """Control baseline: a uniformly random mask of the same ratio (exactly ⌈p·n⌉, seeded by
    ``config.seed``), built once at T_warm and never updated. No importance is tracked."""

    evolving = False
    needs_importance = False

    def compute_mask(self) -> IsolationMask:
        g = torch.Generator().manual_seed(self.config.seed)
        scores = {n: torch.rand(p.shape, generator=g) for n, p in self.params.items()}
        sel = self._select(scores, self.config.isolation_ratio)
        return IsolationMask({n: m.to(self.params[n].device) for n, m in sel.items()})


def wrap_optimizer(optimizer: Any, isolation: EvolvingIsolation) -> Any:
    """Attach ``isolation``'s step hooks to ``optimizer`` (its inner torch optimizer) and return
    ``optimizer`` unchanged: ``optimizer.step()`` now rebuilds masks when due and freezes isolated elements."""
    isolation.attach(optimizer)
    return optimizer
