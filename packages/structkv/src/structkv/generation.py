"""Prefill under a press, then decode over ragged per-layer caches (spec §3.4).

``prefill`` runs the context once under a press and returns the compressed cache with its per-layer
lengths. ``generate`` answers a question from it: explicit ``position_ids`` continuing at the original
context length, and a per-layer additive mask ``[zeros(q, len_l) | causal(q, q)]`` set by a decoder-layer
pre-hook for the question block (transformers sizes one mask from layer 0, which is wrong when layers
hold different numbers of entries). Greedy decoding then feeds one token at a time with mask ``None``.
Between questions the cache is trimmed back to its post-prefill lengths, so one compressed context
serves many questions.

Attention implementations (``model.config._attn_implementation``): ``"eager"`` and ``"sdpa"`` get the
additive per-layer mask. FlashAttention (``"flash_attention_2"``/``"_3"``, hub flash kernels) reads
``attention_mask`` as a 2-D padding mask and would misread the 4-D one, so it gets ``attention_mask=None``:
its causal flag aligns the q×(len_l + q) block to the bottom right (query i sees keys j ≤ len_l + i),
which is exactly ``[zeros(q, len_l) | causal(q, q)]``. flash-attn < 2.1 aligns top-left instead, so a
question block (q > 1) is refused there (:class:`~structkv.errors.UnsupportedAttentionError`; use
``question_mode="tokenwise"``), as is any other implementation (flex, paged).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from structkv._compat import (
    base_model,
    cache_kwarg_name,
    check_supported,
    get_layer_kv,
    layer_length,
    set_layer_kv,
)
from structkv.errors import CacheStateError, UnsupportedAttentionError, UnsupportedModelError
from structkv.presses.base import BasePress


@dataclass
class PrefillResult:
    """A compressed context ready for questions.

    ``context_length`` is the position the question starts at (N, or k for re-indexed GemFilter);
    ``cache_lengths`` the per-layer entries after prefill; ``last_logits`` (B, V) the next-token logits
    after the context; ``stats`` the press's per-call statistics. ``kept_indices[l]`` (B, H_kv, len_l) holds
    the original context positions of the entries in layer l's cache (sorted per head; every layer, every
    press); key -1 holds the propagated set P (B, |P|) of a propagating press (GemFilter: the selected tokens).
    """

    cache: Any
    context_length: int
    cache_lengths: list[int]
    last_logits: torch.Tensor
    kept_indices: dict[int, torch.Tensor] = field(default_factory=dict)
    pivot_layer: int | None = None
    stats: dict = field(default_factory=dict)


def _check_cache(cache) -> None:
    from transformers import DynamicCache

    if type(cache) is not DynamicCache:
        raise CacheStateError(f"prefill needs an empty DynamicCache, got {type(cache).__name__}")
    if cache.get_seq_length() > 0:
        raise CacheStateError(
            f"prefill needs an empty cache; this one already holds {cache.get_seq_length()} tokens"
        )


@torch.no_grad()
def prefill(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    press: BasePress | None = None,
    cache: Any = None,
) -> PrefillResult:
    """Run the context ``input_ids`` (B, N) through ``model`` under ``press`` (None = full cache)."""
    from transformers import DynamicCache

    base = check_supported(model)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, N), got shape {tuple(input_ids.shape)}")
    # with the config, a sliding-window model gets sliding cache layers, as under model.generate
    cache = DynamicCache(config=getattr(model, "config", None)) if cache is None else cache
    _check_cache(cache)
    n = int(input_ids.shape[1])
    pos = torch.arange(n, device=input_ids.device).unsqueeze(0).expand(input_ids.shape[0], -1)
    kwargs = {
        "input_ids": input_ids,
        "position_ids": pos,
        "use_cache": True,
        cache_kwarg_name(base): cache,
    }
    if press is None:
        out = base(**kwargs)
        stats = _full_stats(base, cache, n)
    else:
        with press(model):
            out = base(**kwargs)
        stats = dict(press.last_stats)
    hidden = out.last_hidden_state[:, -1]
    logits = model.lm_head(hidden) if hasattr(model, "lm_head") else hidden
    lengths = [layer_length(cache, i) for i in range(len(base.layers))]
    # kept_indices[l]: (B, H_kv, len_l) original context positions in layer l's cache; key -1: the
    # propagated set P (B, |P|) of a propagating press (GemFilter: its selected tokens)
    sel = stats.pop("selected_indices", None)
    if press is None:
        ar = torch.arange(n, device=input_ids.device)
        kept = {  # the last len_l positions (all N, unless a sliding-window layer cropped them)
            i: ar[n - lengths[i] :].expand(
                input_ids.shape[0], get_layer_kv(cache, i)[0].shape[1], -1
            )
            for i in range(len(base.layers))
        }
    else:
        kept = dict(press.last_kept_indices)
    if sel is not None:
        kept[-1] = sel
    return PrefillResult(
        cache=cache,
        context_length=int(stats.get("decode_position", n)),
        cache_lengths=lengths,
        last_logits=logits.float(),
        kept_indices=kept,
        pivot_layer=stats.get("pivot_layer"),
        stats=stats,
    )


def _full_stats(base, cache, n: int) -> dict:
    L = len(base.layers)
    kv = 0
    for i in range(L):
        k, v = get_layer_kv(cache, i)
        kv += (k.numel() + v.numel()) * k.element_size()
    return {
        "press": "full",
        "context_length": n,
        "tokens_per_layer": [n] * L,
        "cache_len_per_layer": [layer_length(cache, i) for i in range(L)],
        "prefill_cost": 1.0,
        "kv_bytes_before": kv,
        "kv_bytes_after": kv,
        "kv_fraction": 1.0,
        "pivot_layer": None,
        "skipped": None,
    }


def trim_cache(result: PrefillResult) -> None:
    """Cut every layer back to its post-prefill length (drops earlier questions and answers)."""
    for i, n in enumerate(result.cache_lengths):
        k, v = get_layer_kv(result.cache, i)
        if k is not None and k.shape[2] > n:
            set_layer_kv(result.cache, i, k[:, :, :n].contiguous(), v[:, :, :n].contiguous())


MASKED_IMPLEMENTATIONS = ("eager", "sdpa")


def attn_implementation(model: torch.nn.Module) -> str:
    """The attention implementation ``model`` runs (``config._attn_implementation``; eager if unset)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "_attn_implementation", None) or "eager"


def is_flash_attention(impl: str) -> bool:
    """FlashAttention-style kernels: a padding mask or ``None``, causal flag, no 4-D mask."""
    return "flash" in impl.lower()


def flash_attention_top_left() -> bool:
    """True when the installed flash-attn aligns the causal mask top-left (flash-attn < 2.1)."""
    try:
        from transformers.modeling_flash_attention_utils import flash_attn_supports_top_left_mask
    except ImportError:  # pragma: no cover - transformers without FlashAttention support
        return False
    return bool(flash_attn_supports_top_left_mask())


def question_mask_mode(impl: str, q: int) -> Literal["additive", "none"]:
    """How the question block of ``q`` tokens is masked under attention implementation ``impl``.

    ``"additive"``: the per-layer 4-D mask (eager, sdpa; ``None`` when q == 1). ``"none"``:
    ``attention_mask=None`` (FlashAttention's bottom-right causal alignment is the ragged-cache mask).

    Raises:
        UnsupportedAttentionError: top-left FlashAttention with q > 1, or an implementation that is
            neither eager, sdpa nor FlashAttention.
    """
    if impl in MASKED_IMPLEMENTATIONS:
        return "additive"
    if is_flash_attention(impl):
        if q > 1 and flash_attention_top_left():
            raise UnsupportedAttentionError(
                f"attn_implementation={impl!r} with flash-attn < 2.1 aligns the causal mask top-left, "
                f"which hides the compressed context from a {q}-token question block; expected "
                "flash-attn >= 2.1, question_mode='tokenwise', or attn_implementation='sdpa'"
            )
        return "none"
    raise UnsupportedAttentionError(
        f"attn_implementation={impl!r} cannot take the per-layer ragged-cache mask; expected one of "
        f"{', '.join(MASKED_IMPLEMENTATIONS)} or a FlashAttention implementation "
        "('flash_attention_2', 'flash_attention_3')"
    )


@contextmanager
def _per_layer_masks(
    base, q: int, dtype: torch.dtype, device, mode: Literal["additive", "none"] = "additive"
) -> Iterator[None]:
    """Pre-hooks giving layer l the additive mask [zeros(q, len_l) | causal(q, q)]; None when q == 1
    or ``mode == "none"`` (FlashAttention, see :func:`question_mask_mode`)."""
    handles = []

    def make(layer_idx: int):
        def hook(module, args, kwargs):
            if q == 1 or mode == "none":
                mask = None
            else:
                cache = kwargs.get("cache", kwargs.get("past_key_values"))
                past = layer_length(cache, layer_idx)
                neg = torch.finfo(dtype).min
                causal = torch.full((q, q), neg, dtype=dtype, device=device).triu(1)
                mask = torch.cat([torch.zeros(q, past, dtype=dtype, device=device), causal], dim=1)[
                    None, None
                ]
            new = dict(kwargs)
            new["attention_mask"] = mask
            return args, new

        return hook

    try:
        for i, layer in enumerate(base.layers):
            handles.append(layer.register_forward_pre_hook(make(i), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _step(model, base, ids: torch.Tensor, result: PrefillResult, start: int) -> torch.Tensor:
    """Feed ``ids`` (B, q) at positions start..start+q−1; logits (B, q, V)."""
    q = ids.shape[1]
    pos = torch.arange(start, start + q, device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    dtype = next(model.parameters()).dtype
    mode = question_mask_mode(attn_implementation(model), q)
    with _per_layer_masks(base, q, dtype, ids.device, mode):
        out = model(
            input_ids=ids,
            position_ids=pos,
            use_cache=True,
            **{cache_kwarg_name(model): result.cache},
        )
    return out.logits


def _check_window(result: PrefillResult, extra: int) -> None:
    """Refuse feeding ``extra`` tokens after the context when a sliding-window cache would drop entries.

    A sliding-window cache layer keeps its last W − 1 entries by count; after compression those are not
    the last W − 1 positions, so decoding is exact only while context + fed tokens stay within W − 1.
    """
    window = result.stats.get("sliding_window")
    n = result.context_length
    if window and n + extra > window - 1:
        raise UnsupportedModelError(
            f"decoding {extra} tokens after a {n}-token context exceeds the model's sliding window "
            f"({window}): the sliding-window cache would drop entries by count, which after compression "
            f"are not the oldest positions. Keep context + question + answer under {window} tokens"
        )


@torch.no_grad()
def question_logits(
    model: torch.nn.Module,
    result: PrefillResult,
    question_ids: torch.Tensor,
    question_mode: Literal["masked", "tokenwise"] = "masked",
) -> torch.Tensor:
    """Logits (B, q, V) of the question block appended to the compressed context (cache trimmed first)."""
    base = base_model(model)
    _check_window(result, question_ids.shape[1])
    trim_cache(result)
    n = result.context_length
    if question_mode == "masked":
        return _step(model, base, question_ids, result, n).float()
    if question_mode == "tokenwise":
        outs = [
            _step(model, base, question_ids[:, t : t + 1], result, n + t)
            for t in range(question_ids.shape[1])
        ]
        return torch.cat(outs, dim=1).float()
    raise ValueError(f"question_mode must be 'masked' or 'tokenwise', got {question_mode!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    result: PrefillResult,
    question_ids: torch.Tensor | None = None,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    question_mode: Literal["masked", "tokenwise"] = "masked",
    timings: dict | None = None,
) -> torch.Tensor:
    """Greedy answer (B, T) to ``question_ids`` (B, q) from a compressed context; ``None`` continues the context.

    ``timings``, if given, receives ``first_token_s`` (question block → first answer token, wall clock,
    CUDA-synchronised), ``decode_s`` (the later tokens) and ``decode_steps`` (their count).
    """
    base = base_model(model)
    q = 0 if question_ids is None else int(question_ids.shape[1])
    _check_window(result, q + max(max_new_tokens, 1) - 1)
    device = result.last_logits.device
    if timings is not None:
        _sync(device)
        t0 = time.perf_counter()
    if question_ids is None or question_ids.shape[1] == 0:
        trim_cache(result)
        logits = result.last_logits
        pos = result.context_length
    else:
        logits = question_logits(model, result, question_ids, question_mode)[:, -1]
        pos = result.context_length + question_ids.shape[1]
    out = []
    steps, t1 = 0, None
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    for t in range(max_new_tokens):
        tok = logits.argmax(-1)
        out.append(tok)
        if timings is not None and t == 0:
            _sync(device)
            t1 = time.perf_counter()
        if eos_token_id is not None:
            done |= tok == eos_token_id
            if bool(done.all()):
                break
        if t + 1 < max_new_tokens:
            logits = _step(model, base, tok[:, None], result, pos)[:, -1]
            pos += 1
            steps += 1
    if timings is not None:
        _sync(device)
        t2 = time.perf_counter()
        t1 = t2 if t1 is None else t1
        timings.update(first_token_s=t1 - t0, decode_s=t2 - t1, decode_steps=steps)
    return torch.stack(out, dim=1) if out else torch.empty(logits.shape[0], 0, dtype=torch.long)
