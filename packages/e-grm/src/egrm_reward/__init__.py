"""egrm-reward: E-GRM, a generative reward model that reasons only when parallel samples disagree.

M short direct judgements are sampled in parallel (a schedule of temperatures / top-p); if the modal
answer's share reaches τ the direct verdict is returned, otherwise CoT paths are generated and the
best is picked by a lightweight scorer trained with a hybrid regression–ranking loss
(arXiv 2604.10072). Usable as a pairwise judge, a pointwise answerer, a TRL reward function and a
best-of-N selector.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("egrm-reward")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

# names are imported on first use, so `import egrm_reward` and `e-grm --help` stay fast
_EXPORTS = {
    "egrm_reward.bestofn": ("BestOfNResult", "BestOfNSelector"),
    "egrm_reward.consensus": (
        "ConsensusEstimator",
        "ConsensusResult",
        "SamplingSchedule",
        "consensus_from_answers",
    ),
    "egrm_reward.errors": (
        "ConsensusConfigError",
        "DataFormatError",
        "EGRMError",
        "EGRMTypeError",
        "EGRMValueError",
        "EmptyAnswersError",
        "GeneratorCountError",
        "GroupSizeError",
        "ScorerConfigError",
        "ScorerMissingError",
        "ShapeMismatchError",
        "TargetError",
        "ThresholdError",
    ),
    "egrm_reward.losses": ("HybridRankRegLoss",),
    "egrm_reward.pipeline": (
        "CallCost",
        "EfficientGRM",
        "EGRMConfig",
        "EGRMRewardFunction",
        "JudgeResult",
    ),
    "egrm_reward.routing": ("CoTRouter", "RandomRouter", "Route", "RouteDecision"),
    "egrm_reward.scorer": ("PathScorer", "PathScorerConfig"),
    "egrm_reward.trainer": (
        "GroupCollator",
        "PathGroup",
        "PathGroupDataset",
        "ScorerTrainer",
        "make_training_args",
        "train_bradley_terry",
        "train_scorer",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
_WHERE["answer_extractors"] = "egrm_reward.extract:module"

__all__ = [
    "__version__",
    "BestOfNResult",
    "BestOfNSelector",
    "CallCost",
    "CoTRouter",
    "ConsensusConfigError",
    "ConsensusEstimator",
    "ConsensusResult",
    "DataFormatError",
    "EGRMConfig",
    "EGRMError",
    "EGRMRewardFunction",
    "EGRMTypeError",
    "EGRMValueError",
    "EfficientGRM",
    "EmptyAnswersError",
    "GeneratorCountError",
    "GroupCollator",
    "GroupSizeError",
    "HybridRankRegLoss",
    "JudgeResult",
    "PathGroup",
    "PathGroupDataset",
    "PathScorer",
    "PathScorerConfig",
    "RandomRouter",
    "Route",
    "RouteDecision",
    "SamplingSchedule",
    "ScorerConfigError",
    "ScorerMissingError",
    "ScorerTrainer",
    "ShapeMismatchError",
    "TargetError",
    "ThresholdError",
    "consensus_from_answers",
    "make_training_args",
    "train_bradley_terry",
    "train_scorer",
    "answer_extractors",
]


def __getattr__(name: str):
    if name == "answer_extractors":
        import egrm_reward.extract as answer_extractors

        return answer_extractors
    return _lazy(name)


_lazy = lazy_getattr(__name__, {k: v for k, v in _WHERE.items() if k != "answer_extractors"})

if TYPE_CHECKING:  # pragma: no cover
    from egrm_reward import extract as answer_extractors
    from egrm_reward.bestofn import BestOfNResult, BestOfNSelector
    from egrm_reward.consensus import (
        ConsensusEstimator,
        ConsensusResult,
        SamplingSchedule,
        consensus_from_answers,
    )
    from egrm_reward.errors import (
        ConsensusConfigError,
        DataFormatError,
        EGRMError,
        EGRMTypeError,
        EGRMValueError,
        EmptyAnswersError,
        GeneratorCountError,
        GroupSizeError,
        ScorerConfigError,
        ScorerMissingError,
        ShapeMismatchError,
        TargetError,
        ThresholdError,
    )
    from egrm_reward.losses import HybridRankRegLoss
    from egrm_reward.pipeline import (
        CallCost,
        EfficientGRM,
        EGRMConfig,
        EGRMRewardFunction,
        JudgeResult,
    )
    from egrm_reward.routing import CoTRouter, RandomRouter, Route, RouteDecision
    from egrm_reward.scorer import PathScorer, PathScorerConfig
    from egrm_reward.trainer import (
        GroupCollator,
        PathGroup,
        PathGroupDataset,
        ScorerTrainer,
        make_training_args,
        train_bradley_terry,
        train_scorer,
    )
