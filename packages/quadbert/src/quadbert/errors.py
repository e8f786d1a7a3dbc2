"""Errors raised by quadbert on bad input. Each message says what was expected and what was got."""

from __future__ import annotations

from papercore.errors import MalformedInputError, PapercoreError


class QuadbertError(PapercoreError):
    """Base class of every error quadbert raises on purpose."""


class LossConfigError(QuadbertError, ValueError):
    """A :class:`~quadbert.losses.QuadrupletLoss` hyper-parameter or input is out of range."""


class MiningError(QuadbertError, MalformedInputError):
    """Quadruplets cannot be built from the given queries, corpus and qrels."""


class TrainDataError(QuadbertError, MalformedInputError):
    """A training set does not have the quadruplet columns the loss needs."""


class OutputPathError(QuadbertError, ValueError):
    """An output path cannot be written (a directory where a file is expected, or the reverse, or an
    operating-system error while writing); raised before any expensive work where possible."""
