"""Method names → presses, so every method runs with one call pattern and one budget."""

from __future__ import annotations

from typing import Any

from structkv.errors import PressConfigError
from structkv.presses import (
    BasePress,
    FastKVPress,
    GemFilterPress,
    PyramidKVPress,
    RandomPress,
    SnapKVPress,
    StreamingLLMPress,
    StructKVPress,
)

PRESSES: dict[str, type[BasePress] | None] = {
    "full": None,
    "random": RandomPress,  # the accuracy floor of a KV budget (seeded; sinks + window kept)
    "streaming_llm": StreamingLLMPress,
    "snapkv": SnapKVPress,
    "pyramidkv": PyramidKVPress,
    "gemfilter": GemFilterPress,
    "fastkv": FastKVPress,
    "structkv": StructKVPress,
}


def make_press(
    method: str,
    kv_budget: float,
    prefill_budget: float = 0.6,
    window_size: int | None = None,
    **overrides: Any,
) -> BasePress | None:
    """A press for ``method`` keeping ``kv_budget`` of the context KV (compression_ratio = 1 − kv_budget).

    Propagating methods get the same compute budget: StructKV via ``prefill_budget``; FastKV via the
    propagation ratio that gives the same cost at its fixed TSP layer (computed at call time by the
    caller through ``overrides`` if wanted; default: max(kv_budget, 0.2)).
    """
    if method not in PRESSES:
        raise PressConfigError(f"unknown method {method!r}; expected one of {sorted(PRESSES)}")
    cls = PRESSES[method]
    if cls is None:
        return None
    kw: dict[str, Any] = {"compression_ratio": 1.0 - kv_budget}
    if window_size is not None and method not in ("streaming_llm", "gemfilter"):
        kw["window_size"] = window_size
    if method == "structkv":
        kw["prefill_budget"] = prefill_budget
    if method == "fastkv":
        kw["propagation_ratio"] = max(kv_budget, 0.2)
    kw.update(overrides)
    return cls(**kw)
