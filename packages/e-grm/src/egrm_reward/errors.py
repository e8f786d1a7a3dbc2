"""Named errors of ``egrm_reward``: bad input raises one of these, naming what was expected and what was got."""

from __future__ import annotations


class EGRMError(Exception):
    """Base class of every error raised on purpose by ``egrm_reward``."""


class EGRMValueError(EGRMError, ValueError):
    """Bad input value (base of the specific value errors below)."""


class EmptyAnswersError(EGRMValueError):
    """An answer set (or a batch, a prompt, a response) is empty."""


class ConsensusConfigError(EGRMValueError):
    """Bad consensus settings: ``m < 2``, a schedule of the wrong length, a bad swap mask."""


class ThresholdError(EGRMValueError):
    """The consensus threshold τ lies outside (0, 1], or contradicting router flags."""


class GroupSizeError(EGRMValueError):
    """A group of scored paths has fewer than two members (no within-group comparison is possible)."""


class TargetError(EGRMValueError):
    """Quality targets are NaN, outside [0, 1] where required, or of the wrong shape."""


class ShapeMismatchError(EGRMValueError):
    """Tensors or lists that must have the same length do not."""


class DataFormatError(EGRMValueError):
    """A data file (RewardBench parquet, RM-Bench JSON, JSONL) lacks a field or has a wrong type."""


class ScorerConfigError(EGRMValueError):
    """A scorer configuration or saved scorer directory is invalid."""


class ScorerMissingError(EGRMError, RuntimeError):
    """A LONG route needs a scorer and ``EGRMConfig.on_missing_scorer="raise"``."""


class GeneratorCountError(EGRMError, RuntimeError):
    """The generation backend returned a different number of completions than requested."""


class EGRMTypeError(EGRMError, TypeError):
    """An argument of the wrong type (e.g. a completion that is neither a string nor a chat)."""
