"""Errors raised by structkv. Each says what was expected and what was got."""

from __future__ import annotations

from papercore.errors import PapercoreError


class StructKVError(PapercoreError):
    """Base class of every error structkv raises on purpose."""


class PressConfigError(StructKVError, ValueError):
    """A press field (ratio, budget, pivot, window) is outside its valid range."""


class UnsupportedModelError(StructKVError, TypeError):
    """The model cannot be hooked: names what is missing and the supported classes."""


class CacheStateError(StructKVError, ValueError):
    """The cache handed to prefill is not an empty DynamicCache."""


class PressNestingError(StructKVError, RuntimeError):
    """Two presses applied to one model at the same time."""


class NonFiniteScoreError(StructKVError, RuntimeError):
    """A token score is NaN or infinite."""


class UnsupportedAttentionError(StructKVError, ValueError):
    """The model's attention implementation cannot take a ragged-cache question block (names the fix)."""


class PersistError(StructKVError, ValueError):
    """A saved compressed context cannot be written or loaded (exists, wrong model, bad file)."""


class OptionError(StructKVError, ValueError):
    """A runtime option (device, dtype, attention implementation, Triton, question mode) is invalid or
    cannot be honoured on this machine; raised before any model is loaded."""
