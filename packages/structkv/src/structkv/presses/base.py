"""BasePress: the hook plumbing every press shares (kvpress shape; no model monkeypatching).

A press is a dataclass applied as a context manager, ``with press(model): model(input_ids)``. It registers

* a forward pre-hook + forward hook on the decoder stack (``model.model``) that mark the start and the
  end of a prefill call (an explicit phase flag: current transformers no longer passes ``cache_position``);
* a forward hook (with kwargs) on every ``layer.self_attn`` that, while prefilling, calls
  :meth:`BasePress.compress` and writes the shortened keys/values back into the cache.

Hooks are always removed in ``finally``. Subclasses implement :meth:`compress` (or ``score`` via
:class:`~structkv.presses.scorer.ScorerPress`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from structkv._compat import (
    cache_from_kwargs,
    check_context_fits_window,
    check_supported,
    get_layer_kv,
    layer_length,
    set_layer_kv,
    sliding_window,
)
from structkv.centrality import avg_pool
from structkv.errors import NonFiniteScoreError, PressConfigError, PressNestingError
from structkv.kernels import full_indegree, window_indegree

logger = logging.getLogger(__name__)

_ACTIVE_ATTR = "_structkv_active_press"


@dataclass
class _Run:
    """Per-prefill-call state."""

    n: int
    n_layers: int
    batch: int
    cache: Any = None
    skipped: str | None = None
    n_per_layer: list[int] | None = None
    degraded: list[str] = field(default_factory=list)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embeddings to x (B, H, q, d) with cos/sin (B, q, d) (transformers' rotate-half form)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def window_queries(
    module: torch.nn.Module, hidden_states: torch.Tensor, kwargs: dict, w: int
) -> torch.Tensor:
    """Post-RoPE queries (B, H, w, d) of the last ``w`` rows, recomputed from ``q_proj`` (+ ``q_norm``)."""
    b, n, _ = hidden_states.shape
    d = module.head_dim
    q = module.q_proj(hidden_states[:, n - w :]).view(b, w, -1, d)
    if hasattr(module, "q_norm"):
        q = module.q_norm(q)
    q = q.transpose(1, 2)
    cos, sin = kwargs["position_embeddings"]
    return rope(q, cos[:, n - w :].to(q.dtype), sin[:, n - w :].to(q.dtype))


@dataclass
class BasePress:
    """Base of every press. ``compression_ratio`` is the fraction of context KV entries removed (kvpress)."""

    compression_ratio: float = 0.0

    #: presses that drop tokens from the residual stream register decoder-layer pre-hooks too
    propagates = False

    def __post_init__(self) -> None:
        self.validate()
        self.last_stats: dict[str, Any] = {}
        #: {layer: (B, H_kv, len_l)} original context positions held by each layer's cache after the last call;
        #: propagating presses add key -1: the propagated set P (B, |P|) (GemFilter: the selected tokens)
        self.last_kept_indices: dict[int, torch.Tensor] = {}
        self._kept: dict[int, torch.Tensor] = {}
        self._window: int | None = None
        self._run: _Run | None = None
        self._warned_decode = False

    # ------------------------------------------------------------------ config
    def validate(self) -> None:
        if not 0.0 <= float(self.compression_ratio) < 1.0:
            raise PressConfigError(
                f"compression_ratio must be in [0, 1), got {self.compression_ratio}"
            )

    @property
    def memory_ratio(self) -> float:
        """ρ_m = 1 − compression_ratio: the fraction of the context KV that is kept."""
        return 1.0 - float(self.compression_ratio)

    def n_kept(self, n: int) -> int:
        """M = max(1, ⌊n · (1 − compression_ratio)⌋): kvpress's ``ScorerPress`` count (a floor, not a rounding).

        One documented difference: kvpress evaluates ``int(n * (1 - ratio))`` in floats, which drops one entry
        when the product lands just below an integer (n = 200, ratio = 0.9 gives 19 there); here the floor is
        taken with a 1e-9 tolerance, so a product that is an integer on paper (20) is kept exactly.
        """
        return max(1, min(n, math.floor(n * (1 - self.compression_ratio) + 1e-9)))

    def window(self) -> int:
        """The observation window of the current call: ``window_size``, or less after a short-context degrade."""
        w = getattr(self, "_window", None)
        return int(getattr(self, "window_size", 1)) if w is None else int(w)

    def degrade(self, message: str) -> None:
        """Log a short-context degradation (smaller window, …) and record it in ``stats["degraded"]``."""
        logger.warning("%s: %s", type(self).__name__, message)
        if self._run is not None:
            self._run.degraded.append(message)

    def skip(self, reason: str) -> None:
        """Leave this call uncompressed (full prefill, full cache), warn, and record ``stats["skipped"]``."""
        logger.warning("%s: %s; the context is left uncompressed", type(self).__name__, reason)
        warnings.warn(f"{reason}; the context is left uncompressed", stacklevel=3)
        if self._run is not None:
            self._run.skipped = reason

    def min_context(self) -> int:
        """Contexts of at most this many tokens are left uncompressed (with a warning)."""
        return getattr(self, "n_sink", 0) + getattr(self, "window_size", 0) + 1

    # ------------------------------------------------------------------ API for subclasses
    def compress(
        self,
        module: torch.nn.Module,
        hidden_states: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attentions: torch.Tensor | None,
        kwargs: dict,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the keys/values (B, H_kv, n', d) that layer ``module.layer_idx`` keeps."""
        return keys, values

    def reset(self) -> None:
        """Called at the start of every prefill call, before the short-context check: clear per-call state."""

    def begin(self, run: _Run) -> None:
        """Called once at the start of a prefill call (after the short-context check)."""

    def finish(self, stats: dict) -> None:
        """Called once at the end of a prefill call to add press-specific stats."""

    # ------------------------------------------------------------------ shared scoring helper
    def window_scores(
        self, module: torch.nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, kwargs: dict
    ) -> tuple[torch.Tensor, float]:
        """Pooled window in-degree (B, H_kv, n) f32 and the mean normalised entropy H̃_l (spec §2.1, §2.3)."""
        n = keys.shape[2]
        w = max(1, min(self.window(), n))
        q = window_queries(module, hidden_states, kwargs, w)
        q_pos = torch.arange(n - w, n, device=keys.device)
        indeg, ent = window_indegree(
            q, keys, q_pos, float(module.scaling), getattr(self, "use_triton", "auto")
        )
        indeg = avg_pool(indeg, int(getattr(self, "kernel_size", 1)))
        if not torch.isfinite(indeg).all():
            raise NonFiniteScoreError(f"non-finite window in-degree at layer {module.layer_idx}")
        return indeg, float(ent.mean())

    def full_scores(
        self, module: torch.nn.Module, hidden_states: torch.Tensor, keys: torch.Tensor, kwargs: dict
    ) -> torch.Tensor:
        """Pooled in-degree over all queries with causal normalisation (B, H_kv, n) f32 (spec §2.1)."""
        n = keys.shape[2]
        q = window_queries(module, hidden_states, kwargs, n)
        indeg = avg_pool(
            full_indegree(q, keys, float(module.scaling), getattr(self, "use_triton", "auto")),
            int(getattr(self, "kernel_size", 1)),
        )
        if not torch.isfinite(indeg).all():
            raise NonFiniteScoreError(f"non-finite full in-degree at layer {module.layer_idx}")
        return indeg

    def layer_positions(self, layer: int) -> torch.Tensor:
        """(B, n_l) original context positions of the tokens layer ``layer`` processes (all N here)."""
        run = self._run
        return torch.arange(run.n).unsqueeze(0).expand(run.batch, -1)

    def keep(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep positions ``idx`` (B, H_kv, m) — relative to the tokens layer ``layer`` holds — and record
        their original context positions for ``last_kept_indices``."""
        pos = self.layer_positions(layer).to(idx.device)  # (B, n_l)
        b, h, _ = idx.shape
        self._kept[layer] = pos.unsqueeze(1).expand(b, h, -1).gather(2, idx)
        return self.gather_kv(keys, values, idx)

    def kept_indices(self, n_layers: int, cache) -> dict[int, torch.Tensor]:
        """{layer: (B, H_kv, len_l)} original positions each layer's cache holds (every layer), sorted."""
        out: dict[int, torch.Tensor] = {}
        for layer in range(n_layers):
            if layer in self._kept:
                out[layer] = self._kept[layer]
                continue
            keys, _ = get_layer_kv(cache, layer)
            pos = self.layer_positions(layer)
            out[layer] = pos.unsqueeze(1).expand(-1, keys.shape[1], -1)[..., : keys.shape[2]]
        return out

    @staticmethod
    def gather_kv(
        keys: torch.Tensor, values: torch.Tensor, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep positions ``idx`` (B, H_kv, m) (sorted) of keys/values (B, H_kv, n, d)."""
        g = idx.unsqueeze(-1).expand(-1, -1, -1, keys.shape[-1])
        return keys.gather(2, g), values.gather(2, g)

    # ------------------------------------------------------------------ hooks
    @contextmanager
    def __call__(self, model: torch.nn.Module) -> Iterator[BasePress]:
        """Apply the press to ``model`` for the duration of the ``with`` block."""
        base = check_supported(model)
        if getattr(base, _ACTIVE_ATTR, None) is not None:
            raise PressNestingError(
                f"{type(getattr(base, _ACTIVE_ATTR)).__name__} is already applied to this model; "
                "nested or concurrent presses are not supported"
            )
        handles = []
        self._sliding_window = sliding_window(model)
        setattr(base, _ACTIVE_ATTR, self)
        try:
            handles.append(base.register_forward_pre_hook(self._model_pre_hook, with_kwargs=True))
            handles.append(base.register_forward_hook(self._model_post_hook, with_kwargs=True))
            for layer in base.layers:
                handles.append(
                    layer.self_attn.register_forward_hook(self._attn_hook, with_kwargs=True)
                )
            if self.propagates:
                for i, layer in enumerate(base.layers):
                    handles.append(
                        layer.register_forward_pre_hook(
                            self._make_layer_pre_hook(i), with_kwargs=True
                        )
                    )
            yield self
        finally:
            for h in handles:
                h.remove()
            setattr(base, _ACTIVE_ATTR, None)
            self._run = None

    def _model_pre_hook(self, module, args, kwargs):
        cache = cache_from_kwargs(kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        emb = kwargs.get("inputs_embeds")
        x = ids if ids is not None else emb
        if cache is not None and cache.get_seq_length() > 0:
            if not self._warned_decode:
                warnings.warn(
                    f"{type(self).__name__} is active during a decoding call: tokens after the prefill are "
                    "not compressed, and ragged per-layer caches need structkv.generate "
                    "(model.generate compresses the question too and builds masks from layer 0)",
                    stacklevel=2,
                )
                self._warned_decode = True
            self._run = None
            return None
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2 and bool((mask == 0).any()):
            raise NotImplementedError(
                "padded batches are not supported by structkv presses (attention_mask has zeros)"
            )
        check_context_fits_window(
            getattr(self, "_sliding_window", None), int(x.shape[1]), type(self).__name__
        )
        run = _Run(n=int(x.shape[1]), n_layers=len(module.layers), batch=int(x.shape[0]))
        run.n_per_layer = [0] * run.n_layers
        self._run = run
        self._window = None
        self._kept = {}
        self.last_kept_indices = {}
        self.reset()
        if run.n <= self.min_context():
            self.skip(
                f"context of {run.n} tokens is too short for {type(self).__name__} "
                f"(needs more than {self.min_context()})"
            )
            run.skipped = "context too short"
        else:
            self.begin(run)
        return self._rewrite_model_inputs(module, args, kwargs)

    def _rewrite_model_inputs(self, module, args, kwargs):
        """Hook for presses that change the prefill inputs (GemFilter's second pass)."""
        return None

    def _model_post_hook(self, module, args, kwargs, output):
        run = self._run
        if run is None:
            return output
        cache = run.cache if run.cache is not None else getattr(output, "cache", None)
        if cache is None:
            cache = getattr(output, "past_key_values", None)
        self.last_stats = self._collect_stats(run, cache)
        if cache is not None:
            self.last_kept_indices = self.kept_indices(run.n_layers, cache)
        self._run = None
        return output

    def _attn_hook(self, module, args, kwargs, output):
        run = self._run
        if run is None:
            return output
        layer = int(module.layer_idx)
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        run.n_per_layer[layer] = int(hidden.shape[1])
        cache = cache_from_kwargs(kwargs)
        if cache is None or run.skipped:
            return output
        run.cache = cache
        keys, values = get_layer_kv(cache, layer)
        attn = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        with torch.no_grad():
            new_k, new_v = self.compress(module, hidden, keys, values, attn, kwargs)
        if new_k is not keys:
            set_layer_kv(cache, layer, new_k, new_v)
        return output

    def _make_layer_pre_hook(self, layer: int):
        def hook(module, args, kwargs):
            return self._layer_pre_hook(layer, module, args, kwargs)

        return hook

    def _layer_pre_hook(self, layer, module, args, kwargs):
        return None

    # ------------------------------------------------------------------ stats
    def _collect_stats(self, run: _Run, cache) -> dict[str, Any]:
        n, L = run.n, run.n_layers
        lengths = [layer_length(cache, i) for i in range(L)] if cache is not None else []
        kv_after = kv_before = 0
        if cache is not None:
            for i in range(L):
                k, v = get_layer_kv(cache, i)
                per_tok = (k.numel() + v.numel()) // max(1, k.shape[2]) * k.element_size()
                kv_after += (k.numel() + v.numel()) * k.element_size()
                kv_before += per_tok * n
        processed = self.processed_tokens(run)
        stats: dict[str, Any] = {
            "press": type(self).__name__,
            "context_length": n,
            "tokens_per_layer": processed,
            "cache_len_per_layer": lengths,
            "prefill_cost": sum(processed) / (L * n) if n else 1.0,
            "kv_bytes_before": int(kv_before),
            "kv_bytes_after": int(kv_after),
            "kv_fraction": (kv_after / kv_before) if kv_before else 1.0,
            "pivot_layer": None,
            "skipped": run.skipped,
            "degraded": list(run.degraded) or None,
            "window_size": self.window() if hasattr(self, "window_size") else None,
            "sliding_window": getattr(self, "_sliding_window", None),
        }
        self.finish(stats)
        return stats

    def processed_tokens(self, run: _Run) -> list[int]:
        """n_l per layer for the prefill-cost formula Σ n_l / (L·N)."""
        return list(run.n_per_layer or [])


def check_ratio(name: str, value: float, lo_open: bool = True, hi_closed: bool = True) -> None:
    """Raise PressConfigError unless ``value`` is in (0, 1] (or (0, 1) when ``hi_closed`` is False)."""
    ok = (value > 0 if lo_open else value >= 0) and (value <= 1 if hi_closed else value < 1)
    if not ok:
        rng = f"{'(' if lo_open else '['}0, 1{']' if hi_closed else ')'}"
        raise PressConfigError(f"{name} must be in {rng}, got {value}")
