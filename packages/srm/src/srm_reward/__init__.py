"""srm-reward: the Structural Reward Model (SRM; Liu et al., arXiv 2509.25361).

Side branches (a LoRA adapter per dimension on one small base, a full LM, or any ``(prompt, response) -> str``
callable) write auxiliary texts — intent, entity evidence, fact-check, style, quality — that a renderer
appends to the reward model's input in tagged blocks; a Bradley–Terry head trained with TRL's
``RewardTrainer`` scores the enriched input. Distribution ``srm-reward``, import name ``srm_reward``.

Names are imported lazily so that ``srm --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("srm-reward")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "srm_reward.dims": ("DEFAULT_DIMENSIONS", "DEFAULT_DROP_ORDER", "Dimension"),
    "srm_reward.branch": ("SideBranchModel", "run_branches", "BranchRunStats"),
    "srm_reward.cache": ("BranchCache",),
    "srm_reward.render": ("StructuralInputRenderer", "UNAVAILABLE"),
    "srm_reward.model": ("StructuralRewardModel", "SRMRewardFn"),
    "srm_reward.trainer": ("SRMRewardTrainer", "reward_config"),
    "srm_reward.sft": ("SideBranchTrainer", "default_lora_config"),
    "srm_reward.data": (
        "BestOfNSelector",
        "build_aux_dataset",
        "clean_pairs",
        "load_jsonl_pairs",
        "load_rewardbench",
        "load_rm_bench",
        "rewardbench_scores",
        "rm_bench_scores",
    ),
    "srm_reward.diagnostics": ("branch_attribution", "diagnose", "parse_verdict"),
    "srm_reward.errors": (
        "BranchSetMismatchError",
        "BranchUnavailableError",
        "DuplicateDimensionError",
        "EmptyAuxDatasetError",
        "PreferenceDataError",
        "RenderError",
        "SRMConfigError",
        "SRMError",
        "UnknownDimensionError",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BestOfNSelector",
    "BranchCache",
    "BranchRunStats",
    "BranchSetMismatchError",
    "BranchUnavailableError",
    "DEFAULT_DIMENSIONS",
    "DEFAULT_DROP_ORDER",
    "Dimension",
    "DuplicateDimensionError",
    "EmptyAuxDatasetError",
    "PreferenceDataError",
    "RenderError",
    "SRMConfigError",
    "SRMError",
    "SRMRewardFn",
    "SRMRewardTrainer",
    "SideBranchModel",
    "SideBranchTrainer",
    "StructuralInputRenderer",
    "StructuralRewardModel",
    "UNAVAILABLE",
    "UnknownDimensionError",
    "branch_attribution",
    "build_aux_dataset",
    "clean_pairs",
    "default_lora_config",
    "diagnose",
    "load_jsonl_pairs",
    "load_rewardbench",
    "load_rm_bench",
    "parse_verdict",
    "reward_config",
    "rewardbench_scores",
    "rm_bench_scores",
    "run_branches",
]

__getattr__ = lazy_getattr(__name__, _WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from srm_reward.branch import BranchRunStats, SideBranchModel, run_branches
    from srm_reward.cache import BranchCache
    from srm_reward.data import (
        BestOfNSelector,
        build_aux_dataset,
        clean_pairs,
        load_jsonl_pairs,
        load_rewardbench,
        load_rm_bench,
        rewardbench_scores,
        rm_bench_scores,
    )
    from srm_reward.diagnostics import branch_attribution, diagnose, parse_verdict
    from srm_reward.dims import DEFAULT_DIMENSIONS, DEFAULT_DROP_ORDER, Dimension
    from srm_reward.errors import (
        BranchSetMismatchError,
        BranchUnavailableError,
        DuplicateDimensionError,
        EmptyAuxDatasetError,
        PreferenceDataError,
        RenderError,
        SRMConfigError,
        SRMError,
        UnknownDimensionError,
    )
    from srm_reward.model import SRMRewardFn, StructuralRewardModel
    from srm_reward.render import UNAVAILABLE, StructuralInputRenderer
    from srm_reward.sft import SideBranchTrainer, default_lora_config
    from srm_reward.trainer import SRMRewardTrainer, reward_config
