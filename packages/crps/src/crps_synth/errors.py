"""Errors of crps-synth: every one names what was expected and what was got."""

from __future__ import annotations


class CRPSError(Exception):
    """Base class of the package's errors."""


class ConfigError(CRPSError, ValueError):
    """A configuration value out of range (``c_puct <= 0``, ``k < 1``, ``hard_ratio`` outside [0, 1], …)."""


class ProblemError(CRPSError, ValueError):
    """Bad problem input: an empty problem set, a problem without an id, text or gold answer, a duplicate id."""


class StageFileError(CRPSError, ValueError):
    """A stage's JSONL input is missing, malformed or from another stage."""


class CritiqueParseError(CRPSError, ValueError):
    """Too many analyst responses could not be parsed (above ``max_parse_failure_rate``)."""


class ProtocolError(CRPSError, TypeError):
    """An object passed as explorer / analyst / verifier lacks the methods the protocol needs."""
