"""Named errors of srm-reward. Every wrong input raises a subclass of ``ValueError`` / ``TypeError``."""

from __future__ import annotations


class SRMError(Exception):
    """Base class of every srm-reward error."""


class UnknownDimensionError(SRMError, ValueError):
    """A dimension name that is not among the configured / known dimensions."""


class DuplicateDimensionError(SRMError, ValueError):
    """Two branches or dimensions with the same name."""


class BranchSetMismatchError(SRMError, ValueError):
    """The branches given at inference differ (names or order) from the ones the RM was trained with."""


class PreferenceDataError(SRMError, ValueError):
    """A preference record that cannot be used: missing fields, wrong types, an unreadable file."""


class EmptyAuxDatasetError(SRMError, ValueError, RuntimeError):
    """Best-of-N selection kept no example (every candidate scored below ``min_score``)."""


class BranchUnavailableError(SRMError, RuntimeError):
    """A branch failed or timed out while ``strict=True`` (otherwise its text becomes ``UNAVAILABLE``)."""


class RenderError(SRMError, ValueError):
    """The renderer cannot fit the input: ``max_length`` too small for the tags themselves."""


class SRMConfigError(SRMError, ValueError, TypeError):
    """A configuration value of the wrong type or out of range."""
