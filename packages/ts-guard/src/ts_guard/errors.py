"""Errors raised by ts_guard. Each names what was expected and what was got."""

from __future__ import annotations

__all__ = [
    "TSGuardError",
    "CandidateError",
    "ToolCallParseError",
    "GuardParseError",
    "RatingError",
    "WeightsError",
    "PromptBudgetError",
    "DatasetError",
    "ConfigError",
]


class TSGuardError(Exception):
    """Base class of every ts_guard error."""


class CandidateError(TSGuardError, ValueError):
    """The candidate action is missing or is not a tool call (final answers are not judged)."""


class ToolCallParseError(TSGuardError, ValueError):
    """A raw tool call (or its arguments) is not valid JSON; ``raw`` keeps the offending text."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class GuardParseError(TSGuardError, ValueError):
    """Guard output without the three tags (or with values outside yes|no / 0.0|0.5|1.0)."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class RatingError(TSGuardError, ValueError):
    """A ground-truth harmfulness rating outside {0.0, 0.5, 1.0}."""


class WeightsError(TSGuardError, ValueError):
    """Reward weights that are negative, of the wrong length or an unknown preset name."""


class PromptBudgetError(TSGuardError, ValueError):
    """The user request + candidate action alone exceed the prompt budget (they are never cut)."""


class DatasetError(TSGuardError, ValueError):
    """Training data that cannot be used (empty, one class only, missing columns)."""


class ConfigError(TSGuardError, ValueError):
    """An option outside its allowed values (mode, feedback style, on_parse_error, label space...)."""
