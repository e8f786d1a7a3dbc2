"""structkv: structure-aware KV-cache compression (StructKV) and its baselines, as kvpress-style presses.

>>> from structkv import StructKVPress, prefill, generate
>>> with StructKVPress(compression_ratio=0.9, prefill_budget=0.6)(model):
...     out = model(input_ids)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from papercore.lazy import lazy_getattr

try:
    __version__ = version("structkv")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_LAZY = {
    "BasePress": "structkv.presses",
    "ScorerPress": "structkv.presses",
    "PropagatingPress": "structkv.presses",
    "StreamingLLMPress": "structkv.presses",
    "SnapKVPress": "structkv.presses",
    "PyramidKVPress": "structkv.presses",
    "GemFilterPress": "structkv.presses",
    "FastKVPress": "structkv.presses",
    "StructKVPress": "structkv.presses",
    "OraclePress": "structkv.presses",
    "RandomPress": "structkv.presses",
    "PrefillResult": "structkv.generation",
    "prefill": "structkv.generation",
    "generate": "structkv.generation",
    "question_logits": "structkv.generation",
    "save_context": "structkv.persist",
    "load_context": "structkv.persist",
    "longbench_score": "structkv.metrics",
    "window_indegree": "structkv.kernels",
    "window_indegree_torch": "structkv.kernels",
    "pivot_histogram": "structkv.pivot",
    "trace_context": "structkv.pivot",
    "make_press": "structkv.registry",
    "StructKVPipeline": "structkv.pipeline",
    "PRESSES": "structkv.registry",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
