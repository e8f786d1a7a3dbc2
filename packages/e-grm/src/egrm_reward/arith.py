"""The synthetic judge task of the miniature: mod-10 arithmetic chains with k = 1…5 operations.

``Q:3+4*2-5`` is evaluated left to right mod 10. Two output formats, both learned by one tiny generator:

* direct: ``Q:3+4*2-5|direct:`` → ``ans=9``
* step by step: ``Q:3+4*2-5|steps:`` → ``3+4=7;7*2=4;4-5=9;ans=9``

Longer chains make the direct answer unreliable (the model must compute k steps in one forward pass)
while step-by-step stays easy, which is the regime where a consensus gate pays. The generator uses
papercore's word-level tokenizer (one token per digit and symbol), which a tiny model learns in about a
minute on one CPU thread.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from egrm_reward.errors import EGRMValueError

logger = logging.getLogger(__name__)

OPS = ("+", "-", "*")
WORDS = ("Q", "direct", "steps", "ans")
ANSWER_PATTERN = r"ans=(\d)"


def _apply(a: int, op: str, b: int) -> int:
    return (a + b) % 10 if op == "+" else (a - b) % 10 if op == "-" else (a * b) % 10


@dataclass(frozen=True)
class ArithProblem:
    """A start digit and k (operator, digit) steps."""

    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def k(self) -> int:
        return len(self.steps)

    @property
    def values(self) -> list[int]:
        vals = [self.start]
        for op, b in self.steps:
            vals.append(_apply(vals[-1], op, b))
        return vals

    @property
    def answer(self) -> str:
        return str(self.values[-1])

    @property
    def prompt(self) -> str:
        return "Q:" + str(self.start) + "".join(f"{op}{b}" for op, b in self.steps)

    def direct_target(self) -> str:
        return f"ans={self.answer}"

    def cot_target(self) -> str:
        v = self.values
        parts = [f"{v[i]}{op}{b}={v[i + 1]}" for i, (op, b) in enumerate(self.steps)]
        return ";".join(parts) + f";ans={self.answer}"


def make_problem(rng: random.Random, k: int) -> ArithProblem:
    """A random problem with ``k`` ≥ 1 operations."""
    if k < 1:
        raise EGRMValueError(f"k must be >= 1, got {k}")
    return ArithProblem(
        rng.randrange(10), tuple((rng.choice(OPS), rng.randrange(10)) for _ in range(k))
    )


def make_split(
    n_per_k: int, ks: tuple[int, ...] = (1, 2, 3, 4, 5), seed: int = 0
) -> list[ArithProblem]:
    """``n_per_k`` distinct-seeded problems for each k (interleaved by k)."""
    rng = random.Random(seed)
    return [make_problem(rng, k) for _ in range(n_per_k) for k in ks]


def direct_prompt(p: ArithProblem | str) -> str:
    return (p.prompt if isinstance(p, ArithProblem) else p) + "|direct:"


def cot_prompt(p: ArithProblem | str) -> str:
    return (p.prompt if isinstance(p, ArithProblem) else p) + "|steps:"


def path_correct_steps(text: str) -> bool:
    """Whether every ``a op b = c`` step written in a path is right (a checker for analysis, not the scorer)."""
    import re

    steps = re.findall(r"(\d)([+\-*])(\d)=(\d)", text)
    return bool(steps) and all(_apply(int(a), op, int(b)) == int(c) for a, op, b, c in steps)


def build_arith_tokenizer():
    """papercore's word-level tokenizer with the task's words (no chat template)."""
    from papercore.testing import build_word_tokenizer

    sample = make_problem(random.Random(0), 5)
    return build_word_tokenizer(
        WORDS,
        texts=[
            direct_prompt(sample) + sample.direct_target(),
            cot_prompt(sample) + sample.cot_target(),
            "+-*=|;:",
        ],
        chat_template=None,
    )


def arith_egrm_config(**overrides: Any):
    """An :class:`~egrm_reward.pipeline.EGRMConfig` with the task's templates and answer extractor."""
    from egrm_reward.pipeline import EGRMConfig

    kw: dict[str, Any] = dict(
        answer_direct_template="{prompt}|direct:",
        answer_cot_template="{prompt}|steps:",
        answer_extractor="regex:" + ANSWER_PATTERN,
        direct_max_new_tokens=4,
        cot_max_new_tokens=40,
    )
    kw.update(overrides)
    return EGRMConfig(**kw)


@dataclass(frozen=True)
class ArithTask:
    """The generator's training task (papercore's ``SyntheticTask`` protocol): both formats, k = 1…max_k."""

    name: str = "arith-chains"
    max_k: int = 5
    cot_fraction: float = 0.5

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def sample(self, rng: random.Random) -> tuple[str, str]:
        p = make_problem(rng, rng.randint(1, self.max_k))
        if rng.random() < self.cot_fraction:
            return cot_prompt(p), p.cot_target()
        return direct_prompt(p), p.direct_target()


#: the generator of the pipeline bench: a 4-layer Llama, hidden 128 (0.8 M parameters)
GENERATOR_MODEL = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "max_position_embeddings": 128,
}


def train_generator(
    cache_dir: str | Path, *, steps: int = 1600, seed: int = 0, task: ArithTask | None = None
) -> Path:
    """Train (or load from ``cache_dir``) the tiny generator with papercore's ``train_tiny_lm``.

    Loss on the target tokens + EOS, AdamW lr 2e-3, batch 64, one torch thread; cached under a key of
    everything that affects the weights. Returns the model directory.
    """
    from papercore.testing import TrainSettings, train_tiny_lm

    return train_tiny_lm(
        task or ArithTask(),
        cache_dir=cache_dir,
        settings=TrainSettings(steps=steps, batch_size=64, lr=2e-3, warmup=50, seed=seed),
        model_kwargs=dict(GENERATOR_MODEL),
        tokenizer=build_arith_tokenizer(),
        threads=1,
    )
