"""epi: Evolving Parameter Isolation for supervised fine-tuning (Lin et al., arXiv 2604.14010).

Element-level parameter isolation that follows the training: a gradient-importance EMA (per task or
pooled), layer-normalised, rebuilt into a top-p mask every ``update_interval`` optimizer steps; isolated
elements are frozen through optimizer step hooks (bit-identical under AdamW). Works in any torch loop
(:class:`EvolvingIsolation` + :func:`wrap_optimizer`), in an unmodified ``transformers.Trainer`` / TRL
``SFTTrainer`` (:class:`EPICallback`), and with per-task masks (:class:`EPITrainer`, :class:`EPISFTTrainer`).
Baselines: :class:`StaticIsolation` (CPI-FT style), :class:`RandomIsolation`.

Names are imported lazily so that ``epi --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("epi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "epi.config": ("EPIConfig",),
    "epi.tracker": (
        "ParameterImportanceTracker",
        "estimate_state_bytes",
        "importance_score",
        "normalize_scores",
        "select_parameters",
    ),
    "epi.mask": ("IsolationMask", "top_p_global", "top_p_per_layer"),
    "epi.isolation": (
        "EvolvingIsolation",
        "RandomIsolation",
        "StaticIsolation",
        "unwrap_optimizer",
        "wrap_optimizer",
    ),
    "epi.callback": ("EPICallback", "EPI_STATE_NAME"),
    "epi.trainer": ("EPITrainer", "EPITrainerMixin"),
    "epi.sft": ("EPISFTTrainer",),
    "epi.data": ("TaskHomogeneousBatchSampler", "TaskIdCollator"),
    "epi.errors": (
        "EPIConfigError",
        "EPIError",
        "EPIWarning",
        "MissingTaskIdError",
        "MixedTaskWindowError",
        "NoParametersMatchedError",
        "PeftTargetError",
        "ShardedParametersError",
        "StateMemoryError",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "EPICallback",
    "EPIConfig",
    "EPIConfigError",
    "EPIError",
    "EPISFTTrainer",
    "EPITrainer",
    "EPITrainerMixin",
    "EPIWarning",
    "EPI_STATE_NAME",
    "EvolvingIsolation",
    "IsolationMask",
    "MissingTaskIdError",
    "MixedTaskWindowError",
    "NoParametersMatchedError",
    "ParameterImportanceTracker",
    "PeftTargetError",
    "RandomIsolation",
    "ShardedParametersError",
    "StateMemoryError",
    "StaticIsolation",
    "TaskHomogeneousBatchSampler",
    "TaskIdCollator",
    "estimate_state_bytes",
    "importance_score",
    "normalize_scores",
    "select_parameters",
    "top_p_global",
    "top_p_per_layer",
    "unwrap_optimizer",
    "wrap_optimizer",
]

__getattr__ = lazy_getattr(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from epi.callback import EPI_STATE_NAME, EPICallback
    from epi.config import EPIConfig
    from epi.data import TaskHomogeneousBatchSampler, TaskIdCollator
    from epi.errors import (
        EPIConfigError,
        EPIError,
        EPIWarning,
        MissingTaskIdError,
        MixedTaskWindowError,
        NoParametersMatchedError,
        PeftTargetError,
        ShardedParametersError,
        StateMemoryError,
    )
    from epi.isolation import (
        EvolvingIsolation,
        RandomIsolation,
        StaticIsolation,
        unwrap_optimizer,
        wrap_optimizer,
    )
    from epi.mask import IsolationMask, top_p_global, top_p_per_layer
    from epi.sft import EPISFTTrainer
    from epi.tracker import (
        ParameterImportanceTracker,
        estimate_state_bytes,
        importance_score,
        normalize_scores,
        select_parameters,
    )
    from epi.trainer import EPITrainer, EPITrainerMixin
