"""A *simulated* arithmetic generator: a papercore ``GenerationBackend`` without a neural network.

Used by the ``papercore demo`` entry (which must run in seconds) and as the stated fallback of the
pipeline bench. It answers the prompts of :mod:`egrm_reward.arith`:

* ``…|direct:`` → ``ans=d``: the simulated model puts probability ``p_direct[k-1]`` on the right digit,
  most of the rest on one problem-specific wrong digit; sampling tempers this distribution by the
  temperature (greedy takes its mode), so hard items give scattered answers;
* ``…|steps:`` → ``a+b=c;…;ans=d``: each step is wrong with probability ``step_error · T`` (a wrong
  digit that later steps carry on from), so CoT stays accurate at every k.

Token counts follow the word-level tokenizer (one token per character, ``ans`` one token, plus EOS).
Randomness: one stream per (seed, prompt, sample index), as papercore's transformers backend does.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from egrm_reward.arith import ArithProblem, _apply
from egrm_reward.errors import EGRMValueError
from papercore.generation import Completion, SamplingConfig

_PROMPT = re.compile(r"Q:(\d)((?:[+\-*]\d)+)\|(direct|steps):$")


def parse_prompt(prompt: str) -> tuple[ArithProblem, str]:
    m = _PROMPT.search(prompt)
    if not m:
        raise EGRMValueError(
            f"not an arithmetic prompt (expected 'Q:3+4*2|direct:' or '|steps:'), got {prompt!r}"
        )
    steps = tuple((op, int(b)) for op, b in re.findall(r"([+\-*])(\d)", m.group(2)))
    return ArithProblem(int(m.group(1)), steps), m.group(3)


@dataclass
class SimulatedArithBackend:
    """See the module doc. ``p_direct[k-1]``: probability of the right direct answer at k operations."""

    p_direct: tuple[float, ...] = (0.97, 0.85, 0.6, 0.45, 0.35)
    step_error: float = 0.02
    name: str = "simulated"

    def _direct_dist(self, prob: ArithProblem) -> np.ndarray:
        k = min(prob.k, len(self.p_direct))
        p = np.full(10, 0.0)
        right = int(prob.answer)
        confuser = (right + 1 + zlib.crc32(prob.prompt.encode()) % 9) % 10
        rest = 1 - self.p_direct[k - 1]
        p += rest * 0.3 / 10
        p[right] += self.p_direct[k - 1]
        p[confuser] += rest * 0.7
        return p / p.sum()

    def _one(self, prompt: str, cfg: SamplingConfig, rng: np.random.Generator) -> Completion:
        prob, fmt = parse_prompt(prompt)
        t = cfg.temperature
        if fmt == "direct":
            p = self._direct_dist(prob)
            if t == 0:
                d = int(np.argmax(p))
            else:
                q = p ** (1 / t)
                d = int(rng.choice(10, p=q / q.sum()))
            text = f"ans={d}"
        else:
            v, parts = prob.start, []
            for op, b in prob.steps:
                c = _apply(v, op, b)
                if t > 0 and rng.random() < self.step_error * t:
                    c = int((c + rng.integers(1, 10)) % 10)
                parts.append(f"{v}{op}{b}={c}")
                v = c
            text = ";".join(parts) + f";ans={v}"
        n_tok = len(text) - 2 + 1  # one token per character, 'ans' is one token, + EOS
        return Completion(text=text, token_ids=list(range(n_tok)), finish_reason="stop")

    def generate(
        self, prompts: Sequence[str], config: SamplingConfig | None = None
    ) -> list[list[Completion]]:
        cfg = config or SamplingConfig()
        base = 0 if cfg.seed is None else cfg.seed
        out = []
        for p in prompts:
            if not isinstance(p, str):
                raise EGRMValueError(
                    f"the simulated generator takes string prompts, got {type(p).__name__}"
                )
            row = []
            for k in range(cfg.n):
                rng = np.random.default_rng([base % 2**63, zlib.crc32(p.encode()), k])
                row.append(self._one(p, cfg, rng))
            out.append(row)
        return out
