"""Sampling with transformers ``generate`` (the reference backend, and the oracle for the others).

Batching never changes a completion:

* **Ends.** Each row is cut at its own end: the first stop string (``SamplingConfig.stop``; no
  EOS appended) or the first EOS (kept as the last id), whichever comes first; otherwise it ran to
  ``max_new_tokens``. The padding ``generate`` writes after a finished row (``pad_token_id``,
  often the EOS id itself) is never part of ``token_ids`` or ``logprobs``.
* **Randomness.** With sampling, every sequence draws from its own random stream, seeded by
  ``(SamplingConfig.seed, prompt index in the call, sample index)``; the token choice is made by
  :class:`_RowSampler` (transformers' own temperature / top-k / top-p warpers, then one uniform
  draw per step from the row's stream) and ``generate`` runs with ``do_sample=False``. So samples
  do not depend on ``batch_size`` or on the other prompts of the call (up to floating-point
  differences of left-padded batches), and the caller's torch RNG is not touched when a seed is
  given. With ``seed=None`` one base seed is drawn from torch's global RNG per call, so
  :func:`papercore.seeding.seed_everything` still makes runs reproducible.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from papercore.generation.base import (
    Completion,
    Prompt,
    SamplingConfig,
    check_prompts,
    cut_at_stop,
    encode_prompt,
)

logger = logging.getLogger(__name__)


class TransformersBackend:
    """Batched sampling from a loaded transformers causal LM.

    Args:
        model: a ``PreTrainedModel`` with a generation head (or a path / name, loaded offline first).
        tokenizer: its tokenizer (loaded from ``model`` when ``None`` and ``model`` is a path).
        batch_size: prompts per ``generate`` call (each expands to ``n`` sequences); it does not
            change the completions (see the module doc), only speed and memory.
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
        ids = [encode_prompt(p, self.tokenizer) for p in prompts]
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} has no tokens")
        base_seed = None if config.greedy else _base_seed(config.seed)
        out: list[list[Completion]] = []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start : start + self.batch_size]
            out.extend(self._generate_batch(chunk, config, base_seed, start))
        return out

    def _generate_batch(
        self, prompt_ids: list[list[int]], config: SamplingConfig, base_seed: int | None, start: int
    ) -> list[list[Completion]]:
        from transformers import LogitsProcessorList

        tok, model = self.tokenizer, self.model
        eos_ids = _eos_ids(model, tok)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        reps = 1 if config.greedy else config.n  # greedy: n identical samples, decoded once
        width = max(map(len, prompt_ids))
        device = next(model.parameters()).device
        input_ids = torch.tensor(
            [[pad_id] * (width - len(p)) + p for p in prompt_ids for _ in range(reps)],
            device=device,
        )
        attention_mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids for _ in range(reps)],
            device=device,
        )
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "return_dict_in_generate": True,
            "output_logits": config.logprobs,
            "pad_token_id": pad_id,
            "eos_token_id": eos_ids,
            # the token choice is greedy, or made by _RowSampler: never by generate's own sampler
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if config.stop:
            gen_kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        if base_seed is not None:
            rngs = [
                np.random.default_rng([base_seed, start + i, k])
                for i in range(len(prompt_ids))
                for k in range(reps)
            ]
            gen_kwargs["logits_processor"] = LogitsProcessorList([_RowSampler(rngs, config)])
        res = model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)
        new = res.sequences[:, width:]
        logps = None
        if config.logprobs:
            # raw logits per step: [steps][B*n, V] -> log-softmax, pick the generated ids
            logits = torch.stack(res.logits, dim=1).float()  # [B*n, steps, V]
            logps = (
                torch.log_softmax(logits, dim=-1)
                .gather(-1, new[:, : logits.shape[1], None])
                .squeeze(-1)
                .tolist()
            )
        completions: list[Completion] = []
        for row, seq in enumerate(new.tolist()):
            ids, reason = _cut_row(seq, set(eos_ids), pad_id, config.stop, tok)
            body = ids[:-1] if reason == "eos" else ids
            text, hit = cut_at_stop(tok.decode(body, skip_special_tokens=True), config.stop)
            completions.append(
                Completion(
                    text=text,
                    token_ids=ids,
                    logprobs=None if logps is None else logps[row][: len(ids)],
                    finish_reason="stop" if hit or reason != "length" else "length",
                )
            )
        if config.greedy:
            return [[copy.deepcopy(c) for _ in range(config.n)] for c in completions]
        n = config.n
        return [completions[i * n : (i + 1) * n] for i in range(len(prompt_ids))]


class _RowSampler:
    """A logits processor that samples each row's next token from the row's own random stream.

    The row's logits go through transformers' ``TemperatureLogitsWarper``, ``TopKLogitsWarper``
    and ``TopPLogitsWarper`` (what ``generate(do_sample=True)`` applies), then one uniform draw
    from the row's ``numpy`` generator picks a token by inverse CDF. Returns scores that are 0 at
    the chosen token and -inf elsewhere, so ``generate``'s greedy step takes exactly that token.
    """

    def __init__(self, rngs: list[np.random.Generator], config: SamplingConfig):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.rngs = rngs
        self.warpers: list[Any] = []
        if config.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k=config.top_k))
        if config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=config.top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.rngs):
            raise RuntimeError(f"expected {len(self.rngs)} rows of scores, got {scores.shape[0]}")
        warped = scores.float()
        for w in self.warpers:
            warped = w(input_ids, warped)
        probs = torch.softmax(warped, dim=-1).double()
        cdf = probs.cumsum(dim=-1)
        u = torch.tensor([g.random() for g in self.rngs], dtype=torch.float64, device=cdf.device)
        choice = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)
        choice = choice.clamp_(max=probs.shape[-1] - 1)
        # rounding at the very top of the CDF may land on a zero-probability token: take the mode
        zero = probs.gather(-1, choice) == 0
        if bool(zero.any()):
            choice = torch.where(zero, probs.argmax(dim=-1, keepdim=True), choice)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, choice, 0.0)


def _base_seed(seed: int | None) -> int:
    """The call's base seed: ``seed`` itself, or one draw from torch's global RNG when ``None``."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return seed % 2**64  # numpy seeds are non-negative


def _cut_row(
    seq: list[int], eos_set: set[int], pad_id: int, stop: Sequence[str], tok: Any
) -> tuple[list[int], str]:
    """One generated row cut at its own end: (ids, "stop" | "eos" | "length").

    The end is the earliest of: the first token after which the decoded text contains a stop
    string ("stop", the ids end with that token); the first EOS ("eos", kept). Anything after it is
    ``generate``'s padding of a finished row (``pad_id``, possibly equal to an EOS id).
    """
    first_eos = next((j for j, t in enumerate(seq) if t in eos_set), None)
    end = len(seq) if first_eos is None else first_eos
    if first_eos is None and pad_id not in eos_set:
        # a row that stopped on a stop string we do not find in the text (a tokenizer quirk)
        while end and seq[end - 1] == pad_id:
            end -= 1
    if stop:
        j = _stop_end(seq[:end], stop, tok)
        if j is not None:
            return seq[:j], "stop"
    if first_eos is not None:
        return seq[: first_eos + 1], "eos"
    return seq[:end], "length"


def _stop_end(ids: list[int], stop: Sequence[str], tok: Any) -> int | None:
    """Smallest ``j`` such that ``decode(ids[:j])`` contains a stop string, or ``None``.

    transformers' ``StopStringCriteria`` stops once a stop string ends in the last token, so this is
    never later than where ``generate`` stopped the row. Binary search: O(log n) decodes.
    """

    def hit(j: int) -> bool:
        text = tok.decode(ids[:j], skip_special_tokens=False)
        return any(s and s in text for s in stop)

    if not ids or not hit(len(ids)):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tok.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer and model define no eos_token_id; set tokenizer.eos_token")
    return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
