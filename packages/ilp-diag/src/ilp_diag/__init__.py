"""ilp-diag: find the SFT samples a model did not learn, and why (Incomplete Learning Phenomenon).

Re-prompt the fine-tuned model with its own training inputs (:func:`detect_unlearned`), attach per-sample
evidence (:class:`LossTrajectoryCallback`, base-model signals, near-duplicate conflicts, rarity, complexity),
attribute causes with ordered rules (:class:`ILPDiagnoser`, :func:`diagnose`) and apply targeted mitigations
(:mod:`ilp_diag.mitigate`). Spec: Xue et al., "Why Supervised Fine-Tuning Fails to Learn", arXiv 2604.10079.

Names are imported lazily so that ``ilp-diag --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("ilp-diag")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "ilp_diag.records": (
        "SampleRecord",
        "records_from_rows",
        "records_to_rows",
        "validate_records",
    ),
    "ilp_diag.judges": (
        "ExactMatchJudge",
        "Judge",
        "NumericAnswerJudge",
        "SimilarityJudge",
        "make_judge",
        "normalize_answer",
    ),
    "ilp_diag.detect": ("CRITERIA", "detect_unlearned", "unlearned_mask"),
    "ilp_diag.nll": ("sft_tokenize", "teacher_forced_nll", "token_nll", "check_same_tokenizer"),
    "ilp_diag.callback": ("LossTrajectoryCallback", "trajectory_summary"),
    "ilp_diag.signals": (
        "build_signals",
        "complexity_scores",
        "conflict_scores",
        "rarity_scores",
        "near_duplicate_clusters",
    ),
    "ilp_diag.rules": (
        "CAUSES",
        "CAUSE_CODES",
        "DiagnosisConfig",
        "Rule",
        "default_rules",
        "diagnose",
        "report",
        "report_markdown",
    ),
    "ilp_diag.diagnoser": ("ILPDiagnoser",),
    "ilp_diag.mitigate": (
        "DynamicResamplingSampler",
        "evaluate_intervention",
        "knowledge_injection_dataset",
        "loss_weights",
        "random_upweight",
        "replay_mixture",
        "resampling_trainer",
        "resolve_inconsistencies",
        "upweight",
    ),
    "ilp_diag.sft": ("records_dataset", "sft_train", "snapshot_model"),
    "ilp_diag.errors": (
        "ConfigError",
        "ILPDiagError",
        "JudgeError",
        "RecordError",
        "SignalsError",
        "TokenizerMismatchError",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "CAUSES",
    "CAUSE_CODES",
    "CRITERIA",
    "ConfigError",
    "DiagnosisConfig",
    "DynamicResamplingSampler",
    "ExactMatchJudge",
    "ILPDiagError",
    "ILPDiagnoser",
    "Judge",
    "JudgeError",
    "LossTrajectoryCallback",
    "NumericAnswerJudge",
    "RecordError",
    "Rule",
    "SampleRecord",
    "SignalsError",
    "SimilarityJudge",
    "TokenizerMismatchError",
    "build_signals",
    "check_same_tokenizer",
    "complexity_scores",
    "conflict_scores",
    "default_rules",
    "detect_unlearned",
    "diagnose",
    "evaluate_intervention",
    "knowledge_injection_dataset",
    "loss_weights",
    "make_judge",
    "near_duplicate_clusters",
    "normalize_answer",
    "random_upweight",
    "rarity_scores",
    "records_dataset",
    "records_from_rows",
    "records_to_rows",
    "replay_mixture",
    "report",
    "report_markdown",
    "resampling_trainer",
    "resolve_inconsistencies",
    "sft_tokenize",
    "sft_train",
    "snapshot_model",
    "teacher_forced_nll",
    "token_nll",
    "trajectory_summary",
    "unlearned_mask",
    "upweight",
    "validate_records",
]

__getattr__ = lazy_getattr(__name__, _WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from ilp_diag.callback import LossTrajectoryCallback, trajectory_summary
    from ilp_diag.detect import CRITERIA, detect_unlearned, unlearned_mask
    from ilp_diag.diagnoser import ILPDiagnoser
    from ilp_diag.errors import (
        ConfigError,
        ILPDiagError,
        JudgeError,
        RecordError,
        SignalsError,
        TokenizerMismatchError,
    )
    from ilp_diag.judges import (
        ExactMatchJudge,
        Judge,
        NumericAnswerJudge,
        SimilarityJudge,
        make_judge,
        normalize_answer,
    )
    from ilp_diag.mitigate import (
        DynamicResamplingSampler,
        evaluate_intervention,
        knowledge_injection_dataset,
        loss_weights,
        random_upweight,
        replay_mixture,
        resampling_trainer,
        resolve_inconsistencies,
        upweight,
    )
    from ilp_diag.nll import check_same_tokenizer, sft_tokenize, teacher_forced_nll, token_nll
    from ilp_diag.records import SampleRecord, records_from_rows, records_to_rows, validate_records
    from ilp_diag.rules import (
        CAUSE_CODES,
        CAUSES,
        DiagnosisConfig,
        Rule,
        default_rules,
        diagnose,
        report,
        report_markdown,
    )
    from ilp_diag.sft import records_dataset, sft_train, snapshot_model
    from ilp_diag.signals import (
        build_signals,
        complexity_scores,
        conflict_scores,
        near_duplicate_clusters,
        rarity_scores,
    )
