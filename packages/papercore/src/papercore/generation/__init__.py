"""Generation backends behind one protocol: ``make_backend(name, ...).generate(prompts, SamplingConfig(n=...))``.

Every backend also takes ``generate(..., adapters=[name or None, ...])`` (one LoRA adapter per prompt)
and ``generate(prompts, configs=[SamplingConfig, ...])`` (one sampling setting per prompt).
"""

from __future__ import annotations

from typing import Any

from papercore.errors import UnknownBackendError
from papercore.generation.base import (
    AdapterError,
    Completion,
    GenerationBackend,
    Message,
    Prompt,
    SamplingConfig,
    SamplingConfigsError,
    check_adapters,
    check_prompts,
    cut_at_stop,
    encode_prompt,
    render_prompt,
    resolve_configs,
)

BACKENDS = ("transformers", "vllm", "openai")


def make_backend(name: str, **kwargs: Any) -> GenerationBackend:
    """Build a backend by name: ``"transformers"`` | ``"vllm"`` | ``"openai"``.

    ``kwargs`` go to :class:`~papercore.generation.hf.TransformersBackend`,
    :class:`~papercore.generation.vllm.VLLMBackend` or :class:`~papercore.generation.openai.OpenAIBackend`.
    """
    key = name.lower().strip()
    if key in ("transformers", "hf"):
        from papercore.generation.hf import TransformersBackend

        return TransformersBackend(**kwargs)
    if key == "vllm":
        from papercore.generation.vllm import VLLMBackend

        return VLLMBackend(**kwargs)
    if key in ("openai", "server", "http"):
        from papercore.generation.openai import OpenAIBackend

        return OpenAIBackend(**kwargs)
    raise UnknownBackendError(
        f"unknown generation backend {name!r}; expected one of {list(BACKENDS)}"
    )


__all__ = [
    "BACKENDS",
    "AdapterError",
    "Completion",
    "GenerationBackend",
    "Message",
    "Prompt",
    "SamplingConfig",
    "SamplingConfigsError",
    "check_adapters",
    "check_prompts",
    "cut_at_stop",
    "encode_prompt",
    "make_backend",
    "render_prompt",
    "resolve_configs",
]
