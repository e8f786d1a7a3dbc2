"""Sampling with vLLM (optional extra ``papercore[vllm]``; GPU). Imported lazily.

The adapter is deliberately thin: prompts → token ids (:func:`to_vllm_prompt`, the same ids as the
transformers backend), our :class:`SamplingConfig` → ``vllm.SamplingParams``, and vLLM's
``RequestOutput`` → our :class:`Completion` list. All sampling logic is vLLM's own.

LoRA adapters: ``VLLMBackend(model, lora_adapters={name: path})`` starts the engine with
``enable_lora=True`` (and ``max_loras`` / ``max_lora_rank`` large enough for the given adapters
unless set), and ``generate(..., adapters=[name or None, ...])`` sends one ``LoRARequest`` per
prompt (:func:`to_vllm_requests`); vLLM batches requests with different adapters together.

Per-prompt configs: ``generate(prompts, configs=[...])`` sends one ``SamplingParams`` per prompt
in a single ``LLM.generate(prompts, sampling_params=[...])`` call (:func:`to_vllm_sampling_params_list`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from papercore.errors import BackendUnavailableError, ModelNotAvailableError
from papercore.generation.base import (
    AdapterError,
    Completion,
    Prompt,
    SamplingConfig,
    check_adapters,
    check_prompts,
    encode_prompt,
    resolve_configs,
)

# the ranks vLLM accepts for ``max_lora_rank`` (vllm.config.lora.MaxLoRARanks)
_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


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
    """Our :class:`SamplingConfig` as a ``vllm.SamplingParams``.

    Greedy decoding (``temperature=0``) asks vLLM for one sequence whatever ``config.n`` is: the
    ``n`` samples would be equal, so :class:`VLLMBackend` decodes once and copies the completion
    (as the transformers backend does) instead of paying ``n`` decodes.
    """
    vllm = import_vllm()
    return vllm.SamplingParams(
        n=1 if config.greedy else config.n,
        max_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k if config.top_k > 0 else -1,
        seed=config.seed,
        stop=list(config.stop) or None,
        logprobs=0 if config.logprobs else None,  # 0 = only the sampled token's logprob
    )


def to_vllm_sampling_params_list(configs: Sequence[SamplingConfig]) -> list[Any]:
    """One ``vllm.SamplingParams`` per config (equal configs share one object, as vLLM itself does
    when it expands a single ``SamplingParams`` to every prompt)."""
    made: dict[SamplingConfig, Any] = {}
    for c in configs:
        if c not in made:
            made[c] = to_vllm_sampling_params(c)
    return [made[c] for c in configs]


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


def lora_requests_by_name(lora_adapters: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """One ``vllm.lora.request.LoRARequest(name, int_id, path)`` per adapter.

    Integer ids are 1, 2, … in the mapping's order (vLLM needs a unique id > 0 per adapter), so
    the same mapping always gives the same ids.
    """
    import_vllm()
    from vllm.lora.request import LoRARequest

    out = {}
    for i, (name, path) in enumerate(lora_adapters.items(), start=1):
        if not isinstance(name, str) or not name:
            raise AdapterError(f"LoRA adapter names must be non-empty strings, got {name!r}")
        out[name] = LoRARequest(name, i, str(Path(path).expanduser()))
    return out


def to_vllm_requests(
    prompts: Sequence[Prompt],
    adapters: Sequence[str | None] | None,
    lora_adapters: Mapping[str, str | os.PathLike[str]] | None,
    tokenizer: Any,
) -> tuple[list[dict[str, list[int]]], list[Any] | None]:
    """Prompts and per-prompt adapters as ``LLM.generate``'s ``prompts`` and ``lora_request`` lists.

    Returns ``(token_prompts, lora_requests)``: :func:`to_vllm_prompt` per prompt, and one
    ``LoRARequest`` (or ``None`` = the base model) per prompt, or ``None`` when ``adapters`` is
    ``None``. Raises :class:`AdapterError` for a wrong-length list or a name not in ``lora_adapters``.
    """
    prompts = check_prompts(prompts)
    names = check_adapters(adapters, len(prompts))
    token_prompts = [to_vllm_prompt(p, tokenizer) for p in prompts]
    if names is None:
        return token_prompts, None
    known = dict(lora_adapters or {})
    unknown = sorted({a for a in names if a is not None and a not in known})
    if unknown:
        raise AdapterError(
            f"unknown adapter(s) {unknown}; the vLLM backend has these LoRA adapters: "
            f"{list(known)} (pass lora_adapters={{name: path}} to VLLMBackend)"
        )
    by_name = lora_requests_by_name(known) if any(a is not None for a in names) else {}
    return token_prompts, [None if a is None else by_name[a] for a in names]


def vllm_lora_engine_kwargs(
    lora_adapters: Mapping[str, str | os.PathLike[str]], engine_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """``engine_kwargs`` for an ``LLM`` that serves ``lora_adapters``.

    Sets ``enable_lora=True``, and unless given: ``max_loras`` = the number of adapters (so one
    batch can mix them all) and ``max_lora_rank`` = the smallest rank vLLM accepts that covers the
    largest ``r`` in the adapters' ``adapter_config.json``. Each adapter must be a local directory
    with an ``adapter_config.json``.
    """
    if not isinstance(lora_adapters, Mapping) or not lora_adapters:
        raise AdapterError(
            f"lora_adapters must be a non-empty mapping {{name: adapter directory}}, got {lora_adapters!r}"
        )
    out = dict(engine_kwargs)
    if out.get("enable_lora") is False:
        raise AdapterError("lora_adapters were given together with enable_lora=False")
    ranks = []
    for name, path in lora_adapters.items():
        cfg = Path(path).expanduser() / "adapter_config.json"
        if not cfg.is_file():
            raise ModelNotAvailableError(
                f"LoRA adapter {name!r}: {str(cfg)!r} does not exist; expected a local peft adapter "
                "directory (save_pretrained output)"
            )
        try:
            ranks.append(int(json.loads(cfg.read_text())["r"]))
        except (ValueError, KeyError, TypeError) as e:
            raise AdapterError(
                f"LoRA adapter {name!r}: {str(cfg)!r} has no integer 'r' ({type(e).__name__}: {e})"
            ) from None
    out["enable_lora"] = True
    out.setdefault("max_loras", len(lora_adapters))
    need = max(ranks)
    if "max_lora_rank" not in out:
        fits = [r for r in _VLLM_LORA_RANKS if r >= need]
        if not fits:
            raise AdapterError(
                f"LoRA rank {need} exceeds the largest rank vLLM serves ({_VLLM_LORA_RANKS[-1]})"
            )
        out["max_lora_rank"] = fits[0]
    return out


class VLLMBackend:
    """Sampling through an in-process ``vllm.LLM``.

    Args:
        model: a model name / local path (an ``LLM`` is built with ``engine_kwargs``) or an
            existing ``vllm.LLM`` (built with ``enable_lora=True`` if ``lora_adapters`` are given).
        lora_adapters: ``{name: local adapter directory}``, selectable per prompt with
            ``generate(..., adapters=[...])``; the engine is built with LoRA enabled
            (:func:`vllm_lora_engine_kwargs`).
        engine_kwargs: passed to ``vllm.LLM``.
    """

    name = "vllm"

    def __init__(
        self,
        model: Any,
        *,
        lora_adapters: Mapping[str, str | os.PathLike[str]] | None = None,
        **engine_kwargs: Any,
    ):
        vllm = import_vllm()
        build = isinstance(model, str | os.PathLike)
        if engine_kwargs and not build:
            raise TypeError(
                f"engine_kwargs {sorted(engine_kwargs)} only apply when VLLMBackend builds the LLM "
                "from a model name or path; got an existing LLM object"
            )
        self.lora_adapters = dict(lora_adapters or {})
        if self.lora_adapters:
            engine_kwargs = vllm_lora_engine_kwargs(self.lora_adapters, engine_kwargs)
        if build:
            self.llm = vllm.LLM(model=str(model), **engine_kwargs)
        else:
            self.llm = model
            if self.lora_adapters and _lora_config(model) is False:
                raise AdapterError(
                    "lora_adapters were given but the vllm.LLM was built without LoRA support; "
                    "build it with enable_lora=True (or pass a model name to VLLMBackend)"
                )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: SamplingConfig | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
        configs: Sequence[SamplingConfig] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``config.n`` completions per prompt in one ``LLM.generate`` call.

        Args:
            prompts: strings or chat message lists.
            config: sampling settings for every prompt (default ``SamplingConfig()``).
            adapters: one LoRA name (or ``None`` = the base model) per prompt.
            configs: one :class:`SamplingConfig` per prompt instead of ``config``; sent as a list
                of ``SamplingParams``, one per prompt.

        Raises:
            SamplingConfigsError: both ``config`` and ``configs``, or a wrong-length ``configs``.
        """
        token_prompts, lora_requests = to_vllm_requests(
            prompts, adapters, self.lora_adapters, self.tokenizer
        )
        kwargs: dict[str, Any] = {"use_tqdm": False}
        if lora_requests is not None:
            kwargs["lora_request"] = lora_requests
        if configs is None:
            one = config or SamplingConfig()
            params: Any = to_vllm_sampling_params(one)
            per_prompt = [one] * len(token_prompts)
        else:
            per_prompt = resolve_configs(config, configs, len(token_prompts))
            params = to_vllm_sampling_params_list(per_prompt)
        outputs = self.llm.generate(token_prompts, params, **kwargs)
        results = [completions_from_vllm(o) for o in outputs]
        for i, cfg in enumerate(per_prompt):
            if cfg.greedy and cfg.n > 1 and len(results[i]) == 1:  # decoded once: n equal copies
                results[i] = [copy.deepcopy(results[i][0]) for _ in range(cfg.n)]
        return results


def _lora_config(llm: Any) -> bool | None:
    """Whether an ``LLM`` has LoRA enabled (``None`` when it cannot be told, e.g. a stand-in)."""
    try:
        return llm.llm_engine.vllm_config.lora_config is not None
    except AttributeError:
        return None
