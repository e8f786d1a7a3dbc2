"""Parallel sampling of one schedule through papercore's generation backends.

``sample_schedule(backend, prompts_per_entry, schedule, ...)`` returns, for every prompt, the M
completions of the schedule's entries. How the requests reach the backend:

* schedule uniform (only seeds differ) and every entry sees the same prompt: **one call with
  ``n = M``** (seed = the first entry's);
* vLLM (``backend.name == "vllm"``): **one** ``backend.generate(prompts, configs=[...])`` call over
  all ``P·M`` requests, which the vLLM backend sends as one ``LLM.generate`` call with one
  ``SamplingParams`` per request (its own temperature / top-p / seed);
* otherwise: **M calls of ``n = 1``**, one per schedule entry, each batched over all prompts and
  seeded with that entry's seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from egrm_reward.consensus import SamplingSchedule
from egrm_reward.errors import GeneratorCountError
from papercore.generation import Completion, SamplingConfig

logger = logging.getLogger(__name__)


def entry_config(
    schedule: SamplingSchedule,
    i: int,
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    base_seed: int = 0,
    n: int = 1,
) -> SamplingConfig:
    """The :class:`SamplingConfig` of schedule entry ``i`` (seed = ``base_seed · 1_000_003 + seeds[i]``)."""
    return SamplingConfig(
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=schedule.temperatures[i],
        top_p=schedule.top_ps[i],
        seed=base_seed * 1_000_003 + schedule.seeds[i],
        stop=tuple(stop),
    )


def _check(out: Sequence[Sequence[Completion]], n_prompts: int, n: int, what: str) -> None:
    if len(out) != n_prompts or any(len(c) != n for c in out):
        got = [len(c) for c in out]
        raise GeneratorCountError(
            f"{what}: expected {n_prompts} prompts × {n} completions, got {len(out)} prompts with {got} completions"
        )


def sample_schedule(
    backend: Any,
    prompts_per_entry: Sequence[Sequence[Any]],
    schedule: SamplingSchedule,
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    base_seed: int = 0,
) -> list[list[Completion]]:
    """Sample entry ``i`` of the schedule on ``prompts_per_entry[i][p]`` for every prompt ``p``.

    Args:
        backend: a papercore ``GenerationBackend`` (``make_backend(...)``).
        prompts_per_entry: M lists of P prompts (entry i may see a different prompt, e.g. swapped A/B).
    Returns:
        P lists of M completions (entry order).
    Raises:
        GeneratorCountError: the backend returned a different number of completions than asked.
    """
    m = schedule.m
    if len(prompts_per_entry) != m:
        raise GeneratorCountError(
            f"expected {m} prompt lists (one per entry), got {len(prompts_per_entry)}"
        )
    n_p = len(prompts_per_entry[0])
    if n_p == 0:
        return []
    cfgs = [
        entry_config(schedule, i, max_new_tokens=max_new_tokens, stop=stop, base_seed=base_seed)
        for i in range(m)
    ]
    same_prompts = all(list(p) == list(prompts_per_entry[0]) for p in prompts_per_entry)
    if schedule.uniform and same_prompts:
        cfg = entry_config(
            schedule, 0, max_new_tokens=max_new_tokens, stop=stop, base_seed=base_seed, n=m
        )
        out = backend.generate(list(prompts_per_entry[0]), cfg)
        _check(out, n_p, m, "uniform schedule call (n = M)")
        return [list(c) for c in out]
    flat_prompts = [prompts_per_entry[i][p] for p in range(n_p) for i in range(m)]
    flat_cfgs = [cfgs[i] for _ in range(n_p) for i in range(m)]
    if getattr(backend, "name", "") == "vllm":
        out = backend.generate(flat_prompts, configs=flat_cfgs)
        _check(out, len(flat_prompts), 1, "vLLM per-request call")
        flat = [c[0] for c in out]
        return [flat[p * m : (p + 1) * m] for p in range(n_p)]
    result: list[list[Completion]] = [[] for _ in range(n_p)]
    for i in range(m):
        out = backend.generate(list(prompts_per_entry[i]), cfgs[i])
        _check(out, n_p, 1, f"schedule entry {i}")
        for p in range(n_p):
            result[p].append(out[p][0])
    return result


def sample_n(
    backend: Any, prompts: Sequence[Any], config: SamplingConfig
) -> list[list[Completion]]:
    """One call ``backend.generate(prompts, config)``, checked for ``config.n`` completions per prompt."""
    if not prompts:
        return []
    out = backend.generate(list(prompts), config)
    _check(out, len(prompts), config.n, "sample_n")
    return [list(c) for c in out]


def n_tokens(c: Completion) -> int:
    """Generated tokens of a completion (its ids; a whitespace count when the backend gave none)."""
    if c.token_ids is not None:
        return len(c.token_ids)
    return len(c.text.split())
