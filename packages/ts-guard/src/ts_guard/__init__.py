"""ts_guard: ToolSafe's TS-Guard (pre-execution tool-call guard), its GRPO training in TRL, and TS-Flow.

Names are imported lazily so that ``ts-guard --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from papercore.lazy import lazy_getattr

try:
    __version__ = version("ts-guard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "ts_guard.errors": (
        "TSGuardError",
        "CandidateError",
        "ToolCallParseError",
        "GuardParseError",
        "RatingError",
        "WeightsError",
        "PromptBudgetError",
        "DatasetError",
        "ConfigError",
    ),
    "ts_guard.types": ("ToolCall", "Step", "GuardInput", "GuardVerdict", "parse_tool_call"),
    "ts_guard.parsing": (
        "parse_guard_output",
        "parse_heads",
        "official_score",
        "verdict_label",
        "TAGS",
    ),
    "ts_guard.prompt": ("build_guard_prompt", "DEFAULT_TEMPLATE", "format_agent_action"),
    "ts_guard.rewards": (
        "WEIGHT_PRESETS",
        "resolve_weights",
        "multitask_reward",
        "make_reward_funcs",
        "HeadReward",
    ),
    "ts_guard.data": ("Trajectory", "GuardSample", "steps_to_dataset", "trajectory_samples"),
    "ts_guard.train": ("train_grpo", "train_sft", "grpo_config"),
    "ts_guard.guards": (
        "Guard",
        "BackendGuard",
        "HFGuard",
        "RuleGuard",
        "LLMJudgeGuard",
        "OracleGuard",
        "LlamaGuardAdapter",
        "Qwen3GuardAdapter",
    ),
    "ts_guard.flow": ("TSFlowAgent", "ToolEnv", "EpisodeResult", "feedback_message"),
    "ts_guard.evaluate": ("evaluate_guard",),
}

__all__ = ["__version__"] + [name for names in _EXPORTS.values() for name in names]
__getattr__ = lazy_getattr(
    __name__, {name: mod for mod, names in _EXPORTS.items() for name in names}
)


def __dir__() -> list[str]:
    return __all__
