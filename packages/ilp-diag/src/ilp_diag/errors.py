"""Errors raised by ilp-diag: each says what was expected and what was got."""

from __future__ import annotations


class ILPDiagError(Exception):
    """Base class of every ilp-diag error."""


class RecordError(ILPDiagError, ValueError):
    """Training records that cannot be diagnosed: missing targets, duplicate ``idx``, wrong types."""


class JudgeError(ILPDiagError, ValueError):
    """A judge returned a score outside [0, 1] or something that is not a number."""


class TokenizerMismatchError(ILPDiagError, ValueError):
    """Base and SFT models were given different tokenizers (NLL signals would not be comparable)."""


class SignalsError(ILPDiagError, ValueError):
    """A signals table without the columns a diagnosis needs, or with a bad value."""


class ConfigError(ILPDiagError, ValueError):
    """A diagnosis / mitigation setting outside its valid range."""
