"""Errors raised by neurosym-cal. Each one says what was expected and what was got.

Bad input raises a subclass of ``ValueError`` / ``TypeError``; a sandbox that cannot run at all
raises :class:`SandboxError` (an infrastructure failure is never turned into a wrong label).
"""

from __future__ import annotations

try:  # shared with structkv (papercore.models.decoder_layers); re-exported when present
    from papercore.errors import UnsupportedArchitectureError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older papercore

    class UnsupportedArchitectureError(TypeError):  # type: ignore[no-redef]
        """A model whose decoder layers cannot be located (RSA hooks need them)."""


class NeuroSymCalError(Exception):
    """Base class of the errors neurosym-cal raises on purpose (other than the ones below)."""


class CodeExtractionError(NeuroSymCalError, ValueError):
    """A completion has no extractable code where code is required."""


class FeatureMismatchError(NeuroSymCalError, ValueError):
    """Feature names at predict time differ from the ones seen at fit time."""


class TooFewSamplesError(NeuroSymCalError, ValueError):
    """Consensus features need K >= 2 sampled programs per problem."""


class SingleClassError(NeuroSymCalError, ValueError):
    """Labels with one class only: calibration / AUROC are undefined."""


class InvalidProbabilityError(NeuroSymCalError, ValueError):
    """Confidences outside [0, 1], NaN, or arrays whose lengths differ."""


class ProblemFormatError(NeuroSymCalError, ValueError):
    """A problem file or record that does not have the HumanEval / MBPP / EvalPlus shape."""


class OutputExistsError(NeuroSymCalError, ValueError):
    """An output file or directory exists and overwriting was not asked for."""


class SandboxError(NeuroSymCalError, RuntimeError):
    """The sandbox itself failed (could not start, lost its result channel): never a label."""


__all__ = [
    "CodeExtractionError",
    "FeatureMismatchError",
    "InvalidProbabilityError",
    "NeuroSymCalError",
    "OutputExistsError",
    "ProblemFormatError",
    "SandboxError",
    "SingleClassError",
    "TooFewSamplesError",
    "UnsupportedArchitectureError",
]
