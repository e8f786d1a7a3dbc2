"""K chain-of-thought + code completions per problem, through papercore's generation backends.

:func:`sample_programs` works with any :class:`papercore.generation.GenerationBackend`
(``make_backend("transformers" | "vllm" | "openai", ...)``): one ``generate`` call with
``SamplingConfig(n=k, ...)``, then code extraction (:func:`neurosym_cal.extraction.build_program`)
and the mean token log-probability of each completion when the backend returned log-probs
(``logprob_mean`` in spec §2.1; ``None`` when the backend gives none, e.g. ``transformers serve``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neurosym_cal.errors import ProblemFormatError
from neurosym_cal.extraction import build_program
from neurosym_cal.problems import CodeProblem, PublicProblem

logger = logging.getLogger(__name__)

#: default prompt: the problem, then an instruction to reason first and answer in one fenced block
DEFAULT_PROMPT_TEMPLATE = (
    "Solve the following Python programming problem. Think step by step, then give the complete "
    "function `{entry_point}` in one ```python code block.\n\n{prompt}\n"
)


@dataclass
class SampleSet:
    """The K sampled completions of one problem.

    ``codes[k]`` is the program extracted from ``completions[k]`` (``None`` = no code → counted as
    syntax); ``logprobs[k]`` the mean token log-prob of completion k (``None`` when unknown);
    ``token_counts[k]`` its number of generated tokens (``None`` when unknown).
    """

    task_id: str
    prompt: str
    completions: list[str]
    codes: list[str | None]
    logprobs: list[float | None] = field(default_factory=list)
    token_counts: list[int | None] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.completions)
        if len(self.codes) != k:
            raise ValueError(f"{self.task_id}: {k} completions but {len(self.codes)} codes")
        if not self.logprobs:
            self.logprobs = [None] * k
        if not self.token_counts:
            self.token_counts = [None] * k
        for name in ("logprobs", "token_counts"):
            if len(getattr(self, name)) != k:
                raise ValueError(
                    f"{self.task_id}: {k} completions but {len(getattr(self, name))} {name}"
                )

    @property
    def k(self) -> int:
        return len(self.completions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "completions": self.completions,
            "codes": self.codes,
            "logprobs": self.logprobs,
            "token_counts": self.token_counts,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleSet:
        missing = [k for k in ("task_id", "prompt", "completions", "codes") if k not in d]
        if missing:
            raise ProblemFormatError(f"sample record lacks {missing}; got keys {sorted(d)}")
        return cls(
            task_id=str(d["task_id"]),
            prompt=str(d["prompt"]),
            completions=[str(c) for c in d["completions"]],
            codes=[None if c is None else str(c) for c in d["codes"]],
            logprobs=[None if x is None else float(x) for x in d.get("logprobs") or []],
            token_counts=[None if x is None else int(x) for x in d.get("token_counts") or []],
            meta=dict(d.get("meta") or {}),
        )


def format_prompt(
    problem: CodeProblem | PublicProblem, template: str = DEFAULT_PROMPT_TEMPLATE
) -> str:
    """``template`` filled with ``{prompt}``, ``{entry_point}`` and ``{task_id}``."""
    try:
        return template.format(
            prompt=problem.prompt, entry_point=problem.entry_point, task_id=problem.task_id
        )
    except (KeyError, IndexError) as e:
        raise ValueError(
            f"prompt_template may use {{prompt}}, {{entry_point}}, {{task_id}}; got unknown field {e}"
        ) from None


def _mean_logprob(logprobs: Sequence[float] | None) -> float | None:
    if not logprobs:
        return None
    vals = [float(x) for x in logprobs if x is not None and math.isfinite(float(x))]
    return sum(vals) / len(vals) if vals else None


def sample_programs(
    backend: Any,
    problems: Sequence[CodeProblem | PublicProblem],
    k: int = 8,
    sampling: Any = None,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    chat: bool = False,
) -> list[SampleSet]:
    """Sample ``k`` completions per problem and extract their programs.

    Args:
        backend: a papercore generation backend (anything with ``generate(prompts, config)``).
        problems: the problems (only their public fields are used).
        k: samples per problem (overrides ``sampling.n``).
        sampling: a :class:`papercore.SamplingConfig`; default temperature 0.8, 512 new tokens,
            seed 0, log-probs on.
        prompt_template: see :func:`format_prompt`.
        chat: send each prompt as one user message (chat template) instead of a plain string.
    """
    from papercore.generation import SamplingConfig

    if not hasattr(backend, "generate"):
        raise TypeError(
            f"backend must be a papercore generation backend with .generate(), got {type(backend).__name__}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if sampling is None:
        sampling = SamplingConfig(n=k, temperature=0.8, max_new_tokens=512, seed=0, logprobs=True)
    elif not isinstance(sampling, SamplingConfig):
        raise TypeError(
            f"sampling must be a papercore.SamplingConfig, got {type(sampling).__name__}"
        )
    else:
        sampling = replace(sampling, n=k)
    problems = list(problems)
    if not problems:
        return []
    texts = [format_prompt(p, prompt_template) for p in problems]
    prompts: list[Any] = [[{"role": "user", "content": t}] for t in texts] if chat else texts
    outputs = backend.generate(prompts, sampling)
    if len(outputs) != len(problems):
        raise RuntimeError(f"backend returned {len(outputs)} results for {len(problems)} prompts")
    sets = []
    for problem, text, comps in zip(problems, texts, outputs, strict=True):
        completions = [c.text for c in comps]
        codes = [build_program(problem.prompt, c, problem.entry_point) for c in completions]
        lps = [_mean_logprob(c.logprobs) for c in comps]
        counts = [None if c.token_ids is None else len(c.token_ids) for c in comps]
        if sampling.logprobs and all(x is None for x in lps):
            logger.warning("%s: the backend returned no log-probs", problem.task_id)
        sets.append(
            SampleSet(
                task_id=problem.task_id,
                prompt=text,
                completions=completions,
                codes=codes,
                logprobs=lps,
                token_counts=counts,
                meta={"finish_reasons": [c.finish_reason for c in comps], "chat": chat},
            )
        )
    return sets


def save_sample_sets(sets: Sequence[SampleSet], path: str | Path) -> None:
    """One JSON line per problem (atomic write)."""
    from papercore.io import write_jsonl

    write_jsonl(path, [s.to_dict() for s in sets])


def load_sample_sets(path: str | Path) -> list[SampleSet]:
    """Inverse of :func:`save_sample_sets`."""
    from papercore.io import read_jsonl

    return [SampleSet.from_dict(r) for r in read_jsonl(path)]


__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "SampleSet",
    "format_prompt",
    "load_sample_sets",
    "sample_programs",
    "save_sample_sets",
]
