"""Errors raised by kls. Each one says what was expected and what was got."""

from __future__ import annotations


class KLSError(ValueError):
    """Base class of the bad-input errors kls raises on purpose (a ``ValueError``)."""


class EmptyInputError(KLSError):
    """No texts were given, or no text has a single token."""


class SingleClassError(KLSError):
    """Soft labels need at least two classes; the training labels hold only one."""


class TooFewExamplesError(KLSError):
    """A class has fewer training texts than needed (or no extractable keyword); names the class."""


class UnknownLabelError(KLSError, KeyError):
    """Labels at transform time that were not seen at fit time; lists them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidSoftLabelError(KLSError):
    """A soft-label row has the wrong length, NaN/negative entries, or does not sum to 1; names the row."""


class InvalidGroupError(KLSError):
    """A retrieval group has no positive, repeats the positive among its negatives, or has a bad shape."""


class OutOfRangeError(KLSError):
    """A hyperparameter (α, τ, λ, top_k, ...) is outside its valid range or NaN."""


class TokenizerRequiredError(KLSError):
    """CJK text cannot be split on whitespace: pass ``tokenizer=`` (a transformers tokenizer or a callable)."""


class NotFittedError(KLSError):
    """The object must be fitted (``fit``) before this call."""


class UnknownIdError(KLSError, KeyError):
    """Query or document ids (e.g. in qrels) that are not among the given texts; lists them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputExistsError(KLSError, FileExistsError):
    """A save target already exists (a file, or a non-empty directory) and ``overwrite`` is off."""


class ConfigError(KLSError):
    """A saved smoother directory is missing a file, has an unknown format, or does not match."""
