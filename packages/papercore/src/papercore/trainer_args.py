"""Training arguments that are valid on the machine they are built on (``TrainingArguments``, TRL configs).

TRL's configs (``SFTConfig``, ``GRPOConfig``, ``RewardConfig``, …) default ``bf16=True`` and raise at
construction on a machine without a bf16-capable accelerator ("Your setup doesn't support bf16/gpu"), so a
script written on a GPU box fails on a laptop or in CI, and the reverse fix (``bf16=False`` everywhere) wastes
the GPU. :func:`training_args` builds any ``TrainingArguments`` subclass with machine-valid defaults::

    from trl import GRPOConfig
    from papercore.trainer_args import training_args

    args = training_args(GRPOConfig, output_dir="runs/grpo", num_generations=4, learning_rate=1e-5)

TRL is never imported here: pass its config class. papercore does not depend on TRL.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from papercore.errors import TrainingSettingsError

logger = logging.getLogger(__name__)

__all__ = ["Machine", "detect_machine", "training_args", "training_args_kwargs"]

T = TypeVar("T")


@dataclass(frozen=True)
class Machine:
    """What the training arguments depend on: which accelerator (None = CPU only) and whether it trains in bf16."""

    accelerator: str | None
    bf16: bool


def detect_machine() -> Machine:
    """The accelerator torch sees (``"cuda"``, ``"xpu"``, ``"mps"`` or None) and bf16 support as transformers
    checks it (``is_torch_bf16_gpu_available``: CUDA ≥ Ampere, XPU, NPU …)."""
    import torch
    from transformers.utils import is_torch_bf16_gpu_available

    accelerator = None
    if torch.cuda.is_available():
        accelerator = "cuda"
    elif hasattr(torch, "xpu") and torch.xpu.is_available():
        accelerator = "xpu"
    elif torch.backends.mps.is_available():
        accelerator = "mps"
    return Machine(accelerator, accelerator is not None and bool(is_torch_bf16_gpu_available()))


def training_args_kwargs(
    config_cls: type | None = None, *, machine: Machine | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The keyword arguments :func:`training_args` passes to ``config_cls`` (see there); ``machine`` defaults
    to :func:`detect_machine` (pass one to see what another machine would get)."""
    cls = _check_cls(config_cls)
    machine = machine or detect_machine()
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TrainingSettingsError(
            f"{cls.__name__} has no field(s) {unknown}; expected names of its dataclass fields "
            f"(e.g. {sorted(fields)[:8]} …)"
        )
    out = dict(kwargs)
    if "bf16" in out and out["bf16"] is None:  # TRL's "unset": resolved here like an absent bf16
        del out["bf16"]
    out.setdefault("use_cpu", machine.accelerator is None)
    on_cpu = bool(out["use_cpu"])
    where = "use_cpu=True" if machine.accelerator is not None else "a CPU-only machine"
    for name in ("bf16", "bf16_full_eval"):
        if name in fields and out.get(name) and (on_cpu or not machine.bf16):
            raise TrainingSettingsError(
                f"{name}=True was asked for, but training would run on "
                f"{where if on_cpu else f'{machine.accelerator} without bf16 support'}: bf16 mixed precision "
                "needs a bf16-capable accelerator (CUDA ≥ Ampere, XPU, NPU). Leave it unset to get bf16 exactly "
                "where it is supported, or pass False"
            )
    if "bf16" in fields and "bf16" not in out:
        default = fields["bf16"].default
        wanted = (
            (not out.get("fp16", False)) if default is None else bool(default)
        )  # TRL: None → not fp16
        out["bf16"] = bool(wanted and not on_cpu and machine.bf16)
        if wanted and not out["bf16"]:
            logger.info(
                "%s: bf16 off (its default is on; this machine trains without bf16)", cls.__name__
            )
    out.setdefault("report_to", "none")
    if on_cpu:
        out.setdefault("dataloader_pin_memory", False)
    return out


def training_args(config_cls: type[T] | None = None, **kwargs: Any) -> T:
    """Build ``config_cls(**kwargs)`` (default ``transformers.TrainingArguments``; any subclass such as TRL's
    ``SFTConfig``, ``GRPOConfig``, ``RewardConfig``, ``DPOConfig``) with settings valid for this machine.

    Caller keyword arguments win, except that an impossible request is an error rather than a crash later:

    * ``use_cpu``: True when there is no accelerator;
    * ``bf16``: unless given, the class default (TRL: on unless ``fp16``; transformers: off) where the machine
      trains in bf16 (an accelerator with bf16 support and not ``use_cpu``), otherwise False. ``bf16=True``
      (or ``bf16_full_eval=True``) on a CPU-only machine, with ``use_cpu=True``, or on an accelerator without
      bf16 raises :class:`~papercore.errors.TrainingSettingsError` saying why;
    * ``report_to="none"`` (no tracker picks itself up from the environment) unless given;
    * ``dataloader_pin_memory=False`` on CPU (pinning only helps host-to-device copies) unless given.

    Raises:
        TrainingSettingsError: (a ``ValueError`` and ``TypeError``) ``config_cls`` is not a ``TrainingArguments``
            subclass, a keyword is not one of its fields, or bf16 was asked for where it cannot run.
    """
    cls = _check_cls(config_cls)
    return cls(**training_args_kwargs(cls, **kwargs))


def _check_cls(config_cls: type | None) -> type:
    from transformers import TrainingArguments

    if config_cls is None:
        return TrainingArguments
    if not (isinstance(config_cls, type) and issubclass(config_cls, TrainingArguments)):
        got = config_cls.__name__ if isinstance(config_cls, type) else repr(config_cls)
        raise TrainingSettingsError(
            "config_cls must be transformers.TrainingArguments or a subclass (e.g. trl.SFTConfig, "
            f"trl.GRPOConfig), got {got}"
        )
    return config_cls
