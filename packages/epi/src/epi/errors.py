"""Errors and warnings raised by epi. Every error subclasses :class:`EPIError` and a builtin
(``ValueError`` / ``TypeError`` / ``NotImplementedError``) so ``except ValueError`` keeps working."""

from __future__ import annotations

__all__ = [
    "EPIConfigError",
    "EPIError",
    "EPIWarning",
    "MissingTaskIdError",
    "MixedTaskWindowError",
    "NoParametersMatchedError",
    "PeftTargetError",
    "ShardedParametersError",
    "StateMemoryError",
]


class EPIError(Exception):
    """Base class of every epi error."""


class EPIConfigError(EPIError, ValueError):
    """A setting of :class:`~epi.config.EPIConfig` is out of range (says which, expected and got)."""


class NoParametersMatchedError(EPIError, ValueError):
    """``include`` / ``exclude`` left no trainable parameter to track; lists candidate names."""


class MissingTaskIdError(EPIError, ValueError):
    """``track="per_task"`` but a batch carried no task id."""


class MixedTaskWindowError(EPIError, ValueError):
    """A micro-batch or a gradient-accumulation window mixed several task ids in per-task mode."""


class PeftTargetError(EPIError, ValueError):
    """Base (frozen) weights of a peft model were targeted: they have no gradients."""


class StateMemoryError(EPIError, ValueError):
    """The estimated importance state exceeds ``EPIConfig.max_state_gb``."""


class ShardedParametersError(EPIError, NotImplementedError):
    """Parameters are sharded / flattened (DeepSpeed ZeRO-3, FSDP): masks would have to be built on
    local shards, which v1 does not do."""


class EPIWarning(UserWarning):
    """Settings that run but probably do not do what was meant (ratio > 0.5, interval > total steps,
    resume without EPI state)."""
