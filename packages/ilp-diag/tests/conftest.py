"""Shared fixtures: a word tokenizer + tiny Llama for the planted world, and a stub backend."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from ilp_diag.records import SampleRecord
from papercore.generation import Completion, SamplingConfig


class TableBackend:
    """A generation backend whose answers follow a fixed per-prompt distribution (a model that learned it).

    ``table[prompt] = [(answer, weight), ...]``; greedy returns the highest-weight answer; sampling draws
    from the weights with a seeded RNG.
    """

    name = "table"

    def __init__(self, table: dict[str, list[tuple[str, float]]]):
        self.table = table
        self.calls: list[SamplingConfig] = []

    def generate(
        self, prompts: Sequence[str], config: SamplingConfig | None = None, *, adapters=None
    ):
        config = config or SamplingConfig()
        self.calls.append(config)
        rng = random.Random(config.seed or 0)
        out = []
        for p in prompts:
            answers, weights = zip(*self.table[p], strict=True)
            if config.greedy:
                best = answers[max(range(len(answers)), key=lambda j: weights[j])]
                out.append([Completion(best) for _ in range(config.n)])
            else:
                out.append([Completion(a) for a in rng.choices(answers, weights, k=config.n)])
        return out


@pytest.fixture
def table_backend():
    return TableBackend


@pytest.fixture(scope="session")
def world():
    from ilp_diag.synthetic import build_world

    return build_world(
        0,
        n_pre=12,
        n_control=16,
        n_c1=3,
        n_c2=3,
        n_c3_clusters=2,
        n_c4=3,
        n_c5=2,
        n_stage0_controls=4,
    )


@pytest.fixture(scope="session")
def world_tok(world):
    return world.tokenizer()


@pytest.fixture
def make_model(world_tok):
    from papercore.testing.builders import tiny_causal_lm

    def make(seed: int = 0):
        return tiny_causal_lm("llama", tokenizer=world_tok, seed=seed)

    return make


@pytest.fixture
def recs():
    return [
        SampleRecord(0, "Q: color of bob ?\nA:", " red"),
        SampleRecord(1, "Q: color of ann ?\nA:", " blue"),
    ]
