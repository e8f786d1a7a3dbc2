"""The one sampling protocol every method uses: n completions per prompt, with token ids and logprobs.

A backend turns a list of prompts (plain strings, or chat message lists rendered with the
tokenizer's chat template) into one list of :class:`Completion` per prompt. The three backends
(:mod:`~papercore.generation.hf`, :mod:`~papercore.generation.vllm`,
:mod:`~papercore.generation.openai`) follow the same conventions:

* ``token_ids`` are the generated ids, ending with the EOS id when generation stopped on EOS;
  ``text`` is the decoded completion without special tokens, cut before a matched stop string.
* ``logprobs`` (when asked for) are the log-probabilities of each generated token under the
  model's *raw* next-token distribution (before temperature / top-p), one per token id; this is
  what vLLM returns by default.
* ``finish_reason`` is ``"stop"`` (EOS or stop string) or ``"length"``.

Prompt ids (:func:`encode_prompt`, used by the transformers and vLLM backends): a string prompt is
tokenised *with* the tokenizer's special tokens (a Llama / Mistral tokenizer prepends its BOS, as
the model was trained); a chat prompt is rendered with the chat template, which already writes
the BOS (``{{ bos_token }}``) where the model wants one, and the rendered text is tokenised
*without* adding special tokens again (what ``apply_chat_template(tokenize=True)`` does). So both
kinds start with exactly one BOS on tokenizers that have one. A string that is an already
rendered chat text therefore gets a second BOS on such tokenizers: pass the message list instead.

Per-prompt LoRA adapters: every backend's ``generate`` takes ``adapters=[name or None, ...]``,
one entry per prompt (``None`` = the base model), validated by :func:`check_adapters`. The
transformers backend runs peft's mixed-adapter batches, the vLLM backend sends one
``LoRARequest`` per prompt, and the OpenAI-compatible backend sends the adapter name as the
request's ``model`` (vLLM's server serves each LoRA module under its own model name).

Per-prompt sampling settings: every backend's ``generate`` also takes
``configs=[SamplingConfig, ...]``, one per prompt instead of one ``config`` for all (validated by
:func:`resolve_configs`; giving both is an error). The transformers backend runs prompts with
identical configs together (outputs keep the prompts' order, and each prompt keeps its index in
the call for seeding), the vLLM backend sends one ``SamplingParams`` per prompt in a single
``LLM.generate`` call, and the OpenAI-compatible backend sends each prompt's requests with its
own config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from papercore.errors import PapercoreError

Message = dict[str, Any]
Prompt = str | list[Message]


class AdapterError(PapercoreError, ValueError):
    """Per-prompt adapters that do not fit the call or the backend: a list of the wrong length, a
    name that is not a string, an adapter the backend does not know, or a model without adapters."""


class SamplingConfigsError(PapercoreError, ValueError, TypeError):
    """Per-prompt sampling configs that do not fit the call: both ``config`` and ``configs`` given,
    a list of the wrong length, or an entry that is not a :class:`SamplingConfig`."""


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. ``temperature=0`` means greedy decoding (then all ``n`` samples are equal)."""

    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One sampled completion."""

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str = "stop"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sum_logprob(self) -> float | None:
        return None if self.logprobs is None else float(sum(self.logprobs))


@runtime_checkable
class GenerationBackend(Protocol):
    """Anything that samples ``n`` completions per prompt."""

    name: str

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: SamplingConfig | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
        configs: Sequence[SamplingConfig] | None = None,
    ) -> list[list[Completion]]:
        """Return ``len(prompts)`` lists, each of ``config.n`` completions.

        ``adapters``: one LoRA adapter name per prompt (``None`` = the base model), or ``None``
        for the model as configured. ``configs``: one :class:`SamplingConfig` per prompt
        (instead of ``config``); prompt ``i`` then gets ``configs[i].n`` completions.
        """
        ...


def check_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """Validate the prompt list at the boundary: strings or lists of ``{"role", "content"}`` dicts."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of prompts, got a single string; wrap it in a list")
    out = list(prompts)
    for i, p in enumerate(out):
        if isinstance(p, str):
            continue
        if isinstance(p, list) and all(
            isinstance(m, dict) and "role" in m and "content" in m for m in p
        ):
            continue
        raise TypeError(
            f"prompt {i} must be a string or a list of {{'role', 'content'}} messages, got {type(p).__name__}"
        )
    return out


def render_prompt(prompt: Prompt, tokenizer: Any) -> str:
    """A string prompt as is; a chat prompt through the tokenizer's chat template (with generation prompt)."""
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("a chat (message list) prompt needs a tokenizer with a chat_template")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode_prompt(prompt: Prompt, tokenizer: Any) -> list[int]:
    """Token ids of a prompt: see the module doc (string: with special tokens; chat: template only).

    A string that already starts with the tokenizer's BOS token (e.g. a chat template rendered by the
    caller, as multi-turn rollouts do) gets no second one.
    """
    if isinstance(prompt, str):
        bos = getattr(tokenizer, "bos_token", None)
        special = not (isinstance(bos, str) and bos and prompt.startswith(bos))
        return list(tokenizer.encode(prompt, add_special_tokens=special))
    return list(tokenizer.encode(render_prompt(prompt, tokenizer), add_special_tokens=False))


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; returns (text, whether a stop string matched)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def check_adapters(
    adapters: Sequence[str | None] | None, n_prompts: int
) -> list[str | None] | None:
    """Validate per-prompt adapter names at the boundary: ``None``, or one ``str | None`` per prompt.

    Raises :class:`AdapterError` on a single string, a list of the wrong length, or an entry
    that is neither a non-empty string nor ``None``.
    """
    if adapters is None:
        return None
    if isinstance(adapters, str):
        raise AdapterError(
            f"adapters must be a list with one adapter name (or None) per prompt, got the single "
            f"string {adapters!r}; pass [{adapters!r}] * len(prompts)"
        )
    out = list(adapters)
    if len(out) != n_prompts:
        raise AdapterError(
            f"adapters must have one entry per prompt: got {len(out)} adapter names for {n_prompts} prompts"
        )
    for i, a in enumerate(out):
        if a is not None and (not isinstance(a, str) or not a):
            raise AdapterError(
                f"adapter {i} must be an adapter name (non-empty string) or None, got {a!r}"
            )
    return out


def resolve_configs(
    config: SamplingConfig | None,
    configs: Sequence[SamplingConfig] | None,
    n_prompts: int,
) -> list[SamplingConfig]:
    """One :class:`SamplingConfig` per prompt from ``generate``'s ``config`` / ``configs`` arguments.

    ``configs=None`` gives ``config`` (default ``SamplingConfig()``) for every prompt. Raises
    :class:`SamplingConfigsError` when both are given, when ``configs`` is a single config or has
    not one entry per prompt, or when an entry is not a :class:`SamplingConfig`.
    """
    if configs is None:
        return [config or SamplingConfig()] * n_prompts
    if config is not None:
        raise SamplingConfigsError(
            "give either config (one SamplingConfig for every prompt) or configs (one per "
            "prompt), not both"
        )
    if isinstance(configs, SamplingConfig):
        raise SamplingConfigsError(
            "configs must be a list with one SamplingConfig per prompt, got a single "
            "SamplingConfig; pass it as config=... instead"
        )
    out = list(configs)
    if len(out) != n_prompts:
        raise SamplingConfigsError(
            f"configs must have one entry per prompt: got {len(out)} configs for {n_prompts} prompts"
        )
    for i, c in enumerate(out):
        if not isinstance(c, SamplingConfig):
            raise SamplingConfigsError(
                f"configs[{i}] must be a SamplingConfig, got {type(c).__name__}"
            )
    return out
