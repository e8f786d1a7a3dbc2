"""``EPICallback``: evolving parameter isolation for an unmodified ``transformers.Trainer`` / TRL trainer."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import torch
from transformers import TrainerCallback

from epi.config import EPIConfig
from epi.errors import EPIWarning, ShardedParametersError
from epi.isolation import EvolvingIsolation

logger = logging.getLogger(__name__)

__all__ = ["EPI_STATE_NAME", "EPICallback"]

#: file written into every checkpoint directory
EPI_STATE_NAME = "epi_state.pt"


class EPICallback(TrainerCallback):
    """Add to ``Trainer(callbacks=[...])``; it does the whole job:

    * at ``on_train_begin`` it builds the :class:`~epi.isolation.EvolvingIsolation` (or ``isolation_cls``) on
      the trainer's model, registers the step pre/post hooks on the **inner** optimizer (accelerate's wrapper
      unwrapped) and post-accumulate-grad hooks that read importance on the window's last micro-batch —
      i.e. **before gradient clipping**; on a resumed run it reloads masks and EMA from the checkpoint;
    * masks are rebuilt every ``update_interval`` optimizer steps inside the optimizer's pre-step hook, and
      frozen elements are restored in its post-step hook;
    * drift (``epi/jaccard``, ``epi/protected``, ``epi/released``, ``epi/density``) is appended to
      ``state.log_history``; ``on_save`` writes ``epi_state.pt`` into the checkpoint.

    :attr:`masks` is the current ``{parameter name: bool tensor}`` (True = isolated).

    Args:
        config: :class:`~epi.config.EPIConfig` (pooled tracking unless used through ``EPITrainer``).
        task_key: the batch column of task ids (used by ``EPITrainer``).
        isolation_cls: ``EvolvingIsolation`` (default), ``StaticIsolation`` or ``RandomIsolation``.
    """

    def __init__(
        self,
        config: EPIConfig | None = None,
        task_key: str = "task_id",
        isolation_cls: type[EvolvingIsolation] = EvolvingIsolation,
    ) -> None:
        self.config = config or EPIConfig()
        self.config.validate()
        self.task_key = task_key
        self.isolation_cls = isolation_cls
        self.isolation: EvolvingIsolation | None = None
        self._logged = 0

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Current masks (empty before training starts)."""
        return {} if self.isolation is None else self.isolation.masks

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        **kw: Any,
    ) -> None:
        if getattr(args, "fsdp", None) or _zero3(args):
            raise ShardedParametersError(
                "EPI v1 does not support FSDP or DeepSpeed ZeRO-3 (parameters are sharded/flattened); "
                "use DDP or ZeRO-1/2"
            )
        if model is None or optimizer is None:
            raise ValueError(
                "EPICallback.on_train_begin needs the trainer's model and optimizer, got None"
            )
        if self.isolation is None or not _same_params(self.isolation, model):
            self.isolation = self.isolation_cls(model, self.config)
        iso = self.isolation
        iso.attach(optimizer)
        gs = getattr(optimizer, "gradient_state", None)
        if getattr(args, "world_size", 1) > 1:
            # DDP all-reduces gradients after the post-accumulate hooks fire: a pre-clip capture would see each
            # rank's local gradient and masks would differ across ranks. Read the reduced gradients at the step.
            logger.info(
                "epi: distributed run; importance is read at the optimizer step (after clipping)"
            )
        elif gs is not None:
            iso.attach_grad_capture(lambda: bool(gs.sync_gradients))
        else:
            logger.warning(
                "epi: optimizer has no accelerate gradient_state; importance is read after clipping"
            )
        if state.max_steps and self.config.update_interval > state.max_steps and iso.evolving:
            warnings.warn(
                f"update_interval={self.config.update_interval} > total steps {state.max_steps}: the mask never "
                "updates (equals static isolation)",
                EPIWarning,
                stacklevel=2,
            )
        if state.global_step > 0:
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", EPI_STATE_NAME)
            if os.path.exists(path):
                iso.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
                self._logged = len(iso.history)
                logger.info("epi: resumed masks and EMA from %s (step %d)", path, iso.step)
            else:
                warnings.warn(
                    f"resuming at step {state.global_step} without EPI state ({path} missing): masks re-warm-up",
                    EPIWarning,
                    stacklevel=2,
                )
                iso.step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        iso = self.isolation
        if iso is None:
            return
        for stats in iso.history[self._logged :]:
            state.log_history.append(
                {
                    "step": int(stats["step"]),
                    **{f"epi/{k}": v for k, v in stats.items() if k != "step"},
                }
            )
        self._logged = len(iso.history)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.isolation is None:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder) and state.is_world_process_zero:
            torch.save(self.isolation.state_dict(), os.path.join(folder, EPI_STATE_NAME))

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.isolation is not None:
            self.isolation.detach()


def _zero3(args: Any) -> bool:
    ds = getattr(args, "hf_deepspeed_config", None)
    try:
        return bool(ds is not None and ds.is_zero3())
    except Exception:  # pragma: no cover - deepspeed config without is_zero3
        return False


def _same_params(iso: EvolvingIsolation, model: Any) -> bool:
    own = {id(p) for p in model.parameters()}
    return all(id(p) in own for p in iso.params.values())
