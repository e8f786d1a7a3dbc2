"""Small shims over transformers internals that moved between releases (5.20 ↔ 5.24)."""

from __future__ import annotations

from typing import Any

import torch

from papercore.errors import UnsupportedArchitectureError
from papercore.layers import decoder_stack
from structkv.errors import UnsupportedModelError

SUPPORTED = (
    "LlamaForCausalLM, MistralForCausalLM / MinistralForCausalLM (a sliding window only for contexts "
    "shorter than it), Qwen2ForCausalLM, Qwen3ForCausalLM"
)
_ATTENTION_TYPES = ("full_attention", "sliding_attention")
_CACHE_KEYS = ("cache", "past_key_values")


def cache_from_kwargs(kwargs: dict[str, Any]):
    """The cache a layer/attention module was called with (``cache`` in 5.24+, ``past_key_values`` before)."""
    for k in _CACHE_KEYS:
        if kwargs.get(k) is not None:
            return kwargs[k]
    return None


def cache_kwarg_name(module: torch.nn.Module) -> str:
    """Which keyword ``module.forward`` takes for the cache."""
    import inspect

    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def get_layer_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):
        lay = cache.layers[layer]
        return lay.keys, lay.values
    return cache.key_cache[layer], cache.value_cache[
        layer
    ]  # pragma: no cover - transformers < 4.56


def set_layer_kv(cache, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    if hasattr(cache, "layers"):
        cache.layers[layer].keys = keys
        cache.layers[layer].values = values
    else:  # pragma: no cover - transformers < 4.56
        cache.key_cache[layer] = keys
        cache.value_cache[layer] = values


def layer_length(cache, layer: int) -> int:
    keys, _ = get_layer_kv(cache, layer)
    return 0 if keys is None or keys.numel() == 0 else int(keys.shape[-2])


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (``LlamaModel`` …) of a causal LM, of a peft ``PeftModel`` around one, or of the stack
    itself: the module whose ``.layers`` are the decoder layers (found by :func:`papercore.layers.decoder_stack`).

    Raises:
        UnsupportedModelError: no decoder layers at all, or layers not in a Llama-style ``.layers`` list
            (GPT-2's ``transformer.h``): the presses hook Llama-style stacks only.
    """
    try:
        stack = decoder_stack(model)
    except UnsupportedArchitectureError as exc:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no decoder layer list (model.model.layers): {exc}. "
            f"structkv supports: {SUPPORTED}"
        ) from exc
    if not isinstance(getattr(stack, "layers", None), torch.nn.ModuleList):
        raise UnsupportedModelError(
            f"{type(model).__name__} keeps its decoder layers in {type(stack).__name__}, not in a Llama-style "
            f"list (model.model.layers); supported: {SUPPORTED}"
        )
    return stack


def check_supported(model: torch.nn.Module) -> torch.nn.Module:
    """Validate that ``model`` is a dense full-attention decoder we can hook; return its decoder stack."""
    base = base_model(model)
    name = type(model).__name__
    cfg = getattr(model, "config", None)
    missing = []
    if not hasattr(base, "rotary_emb"):
        missing.append("a rotary embedding (model.model.rotary_emb)")
    for i, layer in enumerate(base.layers):
        attn = getattr(layer, "self_attn", None)
        if attn is None:
            missing.append(f"layer {i}.self_attn")
            break
        for attr in ("q_proj", "k_proj", "layer_idx", "head_dim"):
            if not hasattr(attn, attr):
                missing.append(f"layer {i}.self_attn.{attr}")
        if missing:
            break
    if cfg is not None:
        types = getattr(cfg, "layer_types", None)
        if types and any(t not in _ATTENTION_TYPES for t in types):
            missing.append(
                f"full or sliding-window attention in every layer (layer_types has {sorted(set(types))})"
            )
        for moe in ("num_experts", "num_local_experts", "n_routed_experts"):
            if getattr(cfg, moe, None):
                missing.append(f"a dense MLP ({moe}={getattr(cfg, moe)}: MoE is not supported)")
    if missing:
        raise UnsupportedModelError(
            f"cannot hook {name}: missing {'; '.join(missing)}. Supported: {SUPPORTED}"
        )
    return base


def sliding_window(model: torch.nn.Module) -> int | None:
    """The attention window W of a sliding-window model (Mistral with ``sliding_window``, Ministral), else None.

    Qwen2/Qwen3 configs carry a ``sliding_window`` but use it only with ``use_sliding_window=True``; a
    ``layer_types`` list without ``"sliding_attention"`` means full attention everywhere.
    """
    cfg = getattr(model, "config", None)
    w = getattr(cfg, "sliding_window", None)
    if not w or getattr(cfg, "use_sliding_window", True) is False:
        return None
    types = getattr(cfg, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    return int(w)


def check_context_fits_window(window: int | None, n: int, press_name: str) -> None:
    """Raise UnsupportedModelError when a compressed prefill of ``n`` tokens would be wrong under window W.

    Below W the sliding-window mask equals the causal mask and ``DynamicSlidingWindowLayer`` keeps every entry,
    so compression is exact. From W on, that layer keeps only its last W − 1 entries, *by count*: after
    compression its entries are no longer the last W − 1 positions, so the window the model was trained with
    cannot be restored from a compressed cache.
    """
    if window is not None and n >= window:
        raise UnsupportedModelError(
            f"{press_name} cannot compress a {n}-token context on a sliding-window model "
            f"(sliding_window={window}): the sliding-window cache keeps its last {window - 1} entries by count, "
            "which after compression are no longer the last positions, so the attention window cannot be "
            f"restored. Use contexts of fewer than {window} tokens (compression is exact there), or a full-attention model"
        )
