"""Errors raised by papercore. Each one says what was expected and what was got."""

from __future__ import annotations


class PapercoreError(Exception):
    """Base class of every error papercore raises on purpose."""


class ModelNotAvailableError(PapercoreError, FileNotFoundError):
    """A model or tokenizer name is neither a local directory nor in the local cache (and it could not be downloaded)."""


class MalformedInputError(PapercoreError, ValueError):
    """An input file or record does not have the expected shape."""


class JSONLError(MalformedInputError):
    """A JSONL file has a line that is not a JSON object; names the file and the 1-based line."""

    def __init__(self, path: str, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}, line {line}: {reason}")


class UnknownBackendError(PapercoreError, ValueError):
    """A generation backend name that papercore does not know."""


class BackendUnavailableError(PapercoreError, ImportError):
    """A generation backend whose optional dependency is not installed."""


class BackendResponseError(PapercoreError, RuntimeError):
    """A generation server answered with something papercore cannot use (HTTP error, missing fields, missing logprobs)."""


class UnsupportedArchitectureError(PapercoreError, TypeError):
    """A model (or a layer output) whose structure papercore does not know; names the class and what is supported."""


class TrainingSettingsError(PapercoreError, ValueError, TypeError):
    """Training arguments that cannot be built: bf16 without a bf16-capable accelerator (a ValueError), an unknown
    field or a class that is not a ``TrainingArguments`` (a TypeError, as Python raises for a bad keyword)."""
