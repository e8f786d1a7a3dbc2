"""Sampling with transformers ``generate`` (the reference backend, and the oracle for the others)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch

from papercore.generation.base import (
    Completion,
    Prompt,
    SamplingConfig,
    check_prompts,
    cut_at_stop,
    render_prompt,
)

logger = logging.getLogger(__name__)


class TransformersBackend:
    """Batched sampling from a loaded transformers causal LM.

    Args:
        model: a ``PreTrainedModel`` with a generation head (or a path / name, loaded offline first).
        tokenizer: its tokenizer (loaded from ``model`` when ``None`` and ``model`` is a path).
        batch_size: prompts per ``generate`` call (each expands to ``n`` sequences).
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
    ):
        from papercore.models import load_model, load_tokenizer

        if isinstance(model, str):
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
            model = load_model(model, device=device, dtype=dtype)
        if tokenizer is None:
            raise ValueError("TransformersBackend needs a tokenizer when given a model object")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Prompt], config: SamplingConfig | None = None
    ) -> list[list[Completion]]:
        config = config or SamplingConfig()
        prompts = check_prompts(prompts)
        texts = [render_prompt(p, self.tokenizer) for p in prompts]
        out: list[list[Completion]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            seed = None if config.seed is None else config.seed + start
            out.extend(self._generate_batch(chunk, config, seed))
        return out

    def _generate_batch(
        self, texts: list[str], config: SamplingConfig, seed: int | None
    ) -> list[list[Completion]]:
        tok, model = self.tokenizer, self.model
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = old_side
        device = next(model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        eos_ids = _eos_ids(model, tok)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            # greedy decoding gives n identical samples: decode once, copy below
            "num_return_sequences": 1 if config.greedy else config.n,
            "return_dict_in_generate": True,
            "output_logits": config.logprobs,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0],
            "eos_token_id": eos_ids,
        }
        if config.greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            gen_kwargs.update(
                do_sample=True,
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=config.top_k or None,
            )
        if config.stop:
            gen_kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        if seed is not None:
            torch.manual_seed(seed)
        res = model.generate(**enc, **gen_kwargs)
        prompt_len = enc["input_ids"].shape[1]
        new = res.sequences[:, prompt_len:].tolist()
        logps = None
        if config.logprobs:
            # raw logits per step: [steps][B*n, V] -> log-softmax, pick the generated ids
            logits = torch.stack(res.logits, dim=1).float()  # [B*n, steps, V]
            ids = res.sequences[:, prompt_len:]
            logps = (
                torch.log_softmax(logits, dim=-1)
                .gather(-1, ids[:, : logits.shape[1], None])
                .squeeze(-1)
                .tolist()
            )
        completions: list[Completion] = []
        eos_set = set(eos_ids)
        pad_id = gen_kwargs["pad_token_id"]
        for row, seq in enumerate(new):
            if pad_id not in eos_set:  # rows finished by a stop string are right-padded with pad_id
                while seq and seq[-1] == pad_id:
                    seq = seq[:-1]
            cut, reason = len(seq), "length"
            for j, t in enumerate(seq):
                if t in eos_set:
                    cut, reason = j + 1, "stop"
                    break
            ids = seq[:cut]
            body = ids[:-1] if reason == "stop" else ids
            text = tok.decode(body, skip_special_tokens=True)
            text, hit = cut_at_stop(text, config.stop)
            if hit:
                reason = "stop"
            completions.append(
                Completion(
                    text=text,
                    token_ids=ids,
                    logprobs=None if logps is None else logps[row][:cut],
                    finish_reason=reason,
                )
            )
        if config.greedy:
            return [[copy.deepcopy(c) for _ in range(config.n)] for c in completions]
        n = config.n
        return [completions[i * n : (i + 1) * n] for i in range(len(texts))]


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tok.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer and model define no eos_token_id; set tokenizer.eos_token")
    return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
