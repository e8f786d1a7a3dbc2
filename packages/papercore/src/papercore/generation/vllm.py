"""Sampling with vLLM (optional extra ``papercore[vllm]``; GPU). Imported lazily.

The adapter is deliberately thin: prompts → token ids (:func:`to_vllm_prompt`, the same ids as the
transformers backend), our :class:`SamplingConfig` → ``vllm.SamplingParams``, and vLLM's
``RequestOutput`` → our :class:`Completion` list. All sampling logic is vLLM's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from papercore.errors import BackendUnavailableError
from papercore.generation.base import (
    Completion,
    Prompt,
    SamplingConfig,
    check_prompts,
    encode_prompt,
)


def import_vllm():
    """Import vllm or raise :class:`BackendUnavailableError` with the install command."""
    try:
        import vllm
    except ImportError as e:
        raise BackendUnavailableError(
            "the 'vllm' generation backend needs vLLM, which is not installed: "
            "pip install 'papercore[vllm]' (CUDA GPU required), or use backend='transformers'"
        ) from e
    return vllm


def to_vllm_sampling_params(config: SamplingConfig) -> Any:
    """Our :class:`SamplingConfig` as a ``vllm.SamplingParams``."""
    vllm = import_vllm()
    return vllm.SamplingParams(
        n=config.n,
        max_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k if config.top_k > 0 else -1,
        seed=config.seed,
        stop=list(config.stop) or None,
        logprobs=0 if config.logprobs else None,  # 0 = only the sampled token's logprob
    )


def to_vllm_prompt(prompt: Prompt, tokenizer: Any) -> dict[str, list[int]]:
    """A prompt as a vLLM ``TokensPrompt`` (``{"prompt_token_ids": [...]}``).

    The ids come from :func:`~papercore.generation.base.encode_prompt`: a string prompt with the
    tokenizer's special tokens (one BOS), a chat prompt rendered by the chat template and not given
    special tokens again. Passing ids keeps vLLM from tokenising rendered chat text with its default
    ``add_special_tokens=True``, which would put a second BOS before the template's own.
    """
    return {"prompt_token_ids": encode_prompt(prompt, tokenizer)}


def completions_from_vllm(request_output: Any) -> list[Completion]:
    """One vLLM ``RequestOutput`` → our completions (token ids, text, sampled-token logprobs)."""
    out = []
    for o in request_output.outputs:
        ids = list(o.token_ids)
        logprobs = None
        if o.logprobs is not None:
            logprobs = [
                float(step[tid].logprob) for tid, step in zip(ids, o.logprobs, strict=False)
            ]
        out.append(
            Completion(
                text=o.text,
                token_ids=ids,
                logprobs=logprobs,
                finish_reason=o.finish_reason or "stop",
            )
        )
    return out


class VLLMBackend:
    """Sampling through an in-process ``vllm.LLM``.

    Args:
        model: a model name / local path (an ``LLM`` is built with ``engine_kwargs``) or an existing ``vllm.LLM``.
    """

    name = "vllm"

    def __init__(self, model: Any, **engine_kwargs: Any):
        vllm = import_vllm()
        self.llm = vllm.LLM(model=str(model), **engine_kwargs) if isinstance(model, str) else model
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self, prompts: Sequence[Prompt], config: SamplingConfig | None = None
    ) -> list[list[Completion]]:
        config = config or SamplingConfig()
        token_prompts = [to_vllm_prompt(p, self.tokenizer) for p in check_prompts(prompts)]
        outputs = self.llm.generate(token_prompts, to_vllm_sampling_params(config), use_tqdm=False)
        return [completions_from_vllm(o) for o in outputs]
