"""Find a decoder's layer list and read / replace a layer's hidden states, across architectures and versions.

Hooks on decoder layers (activation steering, probes, token dropping) need two things that differ between
models and transformers releases:

* **where the layers are**: ``model.model.layers`` (Llama, Qwen2, Qwen3, Mistral, … ``*ForCausalLM``), ``.layers``
  (the bare decoder stack, e.g. ``LlamaModel``), ``transformer.h`` (GPT-2), ``gpt_neox.layers`` (GPT-NeoX,
  Pythia), possibly behind a peft ``PeftModel`` → :func:`decoder_layers`, :func:`decoder_stack`;
* **what a layer returns**: a ``Tensor`` ``[B, T, d]`` in transformers 5.24, a tuple ``(hidden, …)`` in older
  releases → :func:`layer_hidden`, :func:`replace_layer_hidden`.

A forward hook that adds a steering vector ``delta`` to the residual stream of layer ``i``, on any of them::

    def add_delta(module, args, output):
        return replace_layer_hidden(output, layer_hidden(output) + delta)

    handle = decoder_layers(model)[i].register_forward_hook(add_delta)
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from papercore.errors import UnsupportedArchitectureError

__all__ = ["SUPPORTED", "decoder_layers", "decoder_stack", "layer_hidden", "replace_layer_hidden"]

#: where the layer list is looked for, in order: (path to the stack, attribute of the list)
_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("model", "layers"),  # LlamaForCausalLM, Qwen2/Qwen3/Mistral…ForCausalLM
    ("", "layers"),  # the bare decoder stack (LlamaModel, GPTNeoXModel, …)
    ("transformer", "h"),  # GPT2LMHeadModel
    ("", "h"),  # GPT2Model
    ("gpt_neox", "layers"),  # GPTNeoXForCausalLM
)
SUPPORTED = (
    "Llama / Qwen2 / Qwen3 / Mistral-style causal LMs (model.model.layers), a bare decoder stack (.layers), "
    "GPT-2 (transformer.h), GPT-NeoX (gpt_neox.layers), and any of them wrapped in a peft PeftModel"
)


def _unwrap(model: Any) -> Any:
    """The transformers model inside a peft ``PeftModel`` / ``PeftMixedModel`` (or ``model`` itself)."""
    peft = sys.modules.get(
        "peft"
    )  # a PeftModel exists only if peft was imported: never import it here
    if peft is None:
        return model
    wrappers = tuple(
        cls
        for cls in (getattr(peft, "PeftModel", None), getattr(peft, "PeftMixedModel", None))
        if cls
    )
    while isinstance(model, wrappers):
        model = model.get_base_model()
    return model


def _locate(model: Any) -> tuple[torch.nn.Module, str]:
    """``(stack, attribute)`` such that ``getattr(stack, attribute)`` is the decoder's layer ``ModuleList``."""
    inner = _unwrap(model)
    for path, attr in _LAYOUTS:
        stack = getattr(inner, path, None) if path else inner
        layers = getattr(stack, attr, None) if stack is not None else None
        if isinstance(layers, torch.nn.ModuleList):
            return stack, attr
    wrapped = "" if inner is model else f" (wrapping {type(inner).__name__})"
    raise UnsupportedArchitectureError(
        f"cannot find the decoder layers of {type(model).__name__}{wrapped}: expected a torch.nn.ModuleList at "
        f"one of {', '.join('.'.join(p for p in lay if p) for lay in _LAYOUTS)}. Supported: {SUPPORTED}"
    )


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder's list of layers (the modules whose outputs are the residual stream after each layer).

    Accepts a causal LM (``model.model.layers``: Llama, Qwen2, Qwen3, Mistral, …), a bare decoder stack
    (``.layers``), GPT-2 (``transformer.h``), GPT-NeoX (``gpt_neox.layers``), and any of these wrapped in a
    peft ``PeftModel`` (unwrapped with ``get_base_model()``). The returned ``ModuleList`` is the model's own
    (hooks registered on its items are live).

    Raises:
        UnsupportedArchitectureError: (a ``TypeError``) naming the class and the supported layouts.
    """
    stack, attr = _locate(model)
    return getattr(stack, attr)


def decoder_stack(model: torch.nn.Module) -> torch.nn.Module:
    """The module that owns :func:`decoder_layers` (``model.model`` for a Llama causal LM, ``transformer`` for
    GPT-2, the stack itself for a bare ``LlamaModel``): where the rotary embedding and the final norm live.

    Raises:
        UnsupportedArchitectureError: as :func:`decoder_layers`.
    """
    return _locate(model)[0]


def layer_hidden(output: Any) -> torch.Tensor:
    """The hidden states ``[B, T, d]`` of a decoder layer's output.

    transformers 5.24 layers return the Tensor itself; older releases (and GPT-2 / GPT-NeoX) return a tuple
    ``(hidden, …)`` whose first item is the hidden states. Both are accepted.

    Raises:
        UnsupportedArchitectureError: if ``output`` is neither a Tensor nor a non-empty tuple/list starting with one.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise UnsupportedArchitectureError(
        f"expected a decoder layer output: a Tensor (transformers ≥ 5.24) or a tuple whose first item is the "
        f"hidden-state Tensor (older releases); got {_describe(output)}"
    )


def replace_layer_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden states replaced by ``hidden``, in the same structure.

    A Tensor output gives ``hidden``; a tuple ``(h, *rest)`` gives ``(hidden, *rest)`` (a list gives a list), so
    the value can be returned from a forward hook whatever the transformers version.

    Raises:
        UnsupportedArchitectureError: if ``output`` is not a layer output (see :func:`layer_hidden`).
        TypeError: if ``hidden`` is not a Tensor.
    """
    layer_hidden(output)  # validates the structure
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"hidden must be a torch.Tensor, got {_describe(hidden)}")
    if isinstance(output, torch.Tensor):
        return hidden
    return (
        type(output)([hidden, *output[1:]]) if isinstance(output, list) else (hidden, *output[1:])
    )


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        items = ", ".join(type(v).__name__ for v in value[:3]) + (", …" if len(value) > 3 else "")
        return f"{type(value).__name__} of length {len(value)} ({items})"
    return type(value).__name__
