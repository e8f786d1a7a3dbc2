"""crps-synth: contrastive reasoning-path synthesis from MCTS trajectories (CRPS; Liu et al., 2026).

Pipeline: :class:`MCTS` explores step-wise solutions → :func:`stratify` / :func:`select_anchor` /
:class:`ContrastivePairSampler` build (τ+, τ−) pairs → :class:`ContrastiveAnalyzer` asks an analyst
model for a structured critique → :class:`PathSynthesizer` writes and verifies a new solution →
:func:`to_sft_dataset` exports a TRL prompt/completion dataset. :mod:`crps_synth.pipeline` runs it as
resumable JSONL stages; :func:`rejection_sampling_baseline` and :func:`best_path_baseline` give the
baselines in the same shape.

Names are imported lazily so that ``crps-synth --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("crps-synth")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "crps_synth.trajectory": (
        "Trajectory",
        "ContrastivePair",
        "ContrastiveCritique",
        "SynthesizedPath",
    ),
    "crps_synth.mcts": ("MCTS", "MCTSConfig", "MCTSTree", "Node", "StepGenerator", "uct_score"),
    "crps_synth.sampling": (
        "ContrastivePairSampler",
        "select_anchor",
        "stratify",
        "successive_sample",
    ),
    "crps_synth.critique": ("ContrastiveAnalyzer", "parse_critique"),
    "crps_synth.synthesize": ("PathSynthesizer",),
    "crps_synth.verify": ("MathVerifier", "StringVerifier", "Verifier", "extract_boxed"),
    "crps_synth.llm": (
        "BackendChatLLM",
        "BackendStepGenerator",
        "ChatLLM",
        "ScriptedChatLLM",
        "make_chat_llm",
    ),
    "crps_synth.steps": ("divergence_index", "format_steps", "parse_steps", "segment_steps"),
    "crps_synth.export": (
        "ExportReport",
        "best_path_baseline",
        "rejection_sampling_baseline",
        "render_prompt",
        "to_sft_dataset",
    ),
    "crps_synth.pipeline": ("CRPSPipeline", "StageStats", "normalize_problems"),
    "crps_synth.train": ("sft_config", "train_sft"),
    "crps_synth.errors": (
        "CRPSError",
        "ConfigError",
        "CritiqueParseError",
        "ProblemError",
        "ProtocolError",
        "StageFileError",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BackendChatLLM",
    "BackendStepGenerator",
    "CRPSError",
    "CRPSPipeline",
    "ChatLLM",
    "ConfigError",
    "ContrastiveAnalyzer",
    "ContrastiveCritique",
    "ContrastivePair",
    "ContrastivePairSampler",
    "CritiqueParseError",
    "ExportReport",
    "MCTS",
    "MCTSConfig",
    "MCTSTree",
    "MathVerifier",
    "Node",
    "PathSynthesizer",
    "ProblemError",
    "ProtocolError",
    "ScriptedChatLLM",
    "StageFileError",
    "StageStats",
    "StepGenerator",
    "StringVerifier",
    "SynthesizedPath",
    "Trajectory",
    "Verifier",
    "best_path_baseline",
    "divergence_index",
    "extract_boxed",
    "format_steps",
    "make_chat_llm",
    "normalize_problems",
    "parse_critique",
    "parse_steps",
    "rejection_sampling_baseline",
    "render_prompt",
    "segment_steps",
    "select_anchor",
    "sft_config",
    "stratify",
    "successive_sample",
    "to_sft_dataset",
    "train_sft",
    "uct_score",
]

__getattr__ = lazy_getattr(__name__, _WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from crps_synth.critique import ContrastiveAnalyzer, parse_critique
    from crps_synth.errors import (
        ConfigError,
        CritiqueParseError,
        CRPSError,
        ProblemError,
        ProtocolError,
        StageFileError,
    )
    from crps_synth.export import (
        ExportReport,
        best_path_baseline,
        rejection_sampling_baseline,
        render_prompt,
        to_sft_dataset,
    )
    from crps_synth.llm import (
        BackendChatLLM,
        BackendStepGenerator,
        ChatLLM,
        ScriptedChatLLM,
        make_chat_llm,
    )
    from crps_synth.mcts import MCTS, MCTSConfig, MCTSTree, Node, StepGenerator, uct_score
    from crps_synth.pipeline import CRPSPipeline, StageStats, normalize_problems
    from crps_synth.sampling import (
        ContrastivePairSampler,
        select_anchor,
        stratify,
        successive_sample,
    )
    from crps_synth.steps import divergence_index, format_steps, parse_steps, segment_steps
    from crps_synth.synthesize import PathSynthesizer
    from crps_synth.train import sft_config, train_sft
    from crps_synth.trajectory import (
        ContrastiveCritique,
        ContrastivePair,
        SynthesizedPath,
        Trajectory,
    )
    from crps_synth.verify import MathVerifier, StringVerifier, Verifier, extract_boxed
