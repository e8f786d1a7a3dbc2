"""A synthetic fact world with planted ILP causes (spec §4.1), for the bench, the demo and tests.

Entities are made-up words with three attributes (color, city, shape). A tiny Llama is pre-trained on
question–answer pairs about the facts of ``F_pre`` (a subset of entities). The SFT set tags every sample
with the cause planted in it:

* ``control``  — questions on ``F_pre`` facts with their true answer (should be learned);
* ``C1`` missing knowledge — questions on entities never seen in pre-training, each asked once;
* ``C2`` knowledge conflict — ``F_pre`` facts with an SFT answer that contradicts pre-training;
* ``C3`` inconsistency — near-duplicate prompts (the same question) with 3 different answers;
* ``C4`` left-side forgetting — new facts (shapes, never pre-trained) in a stage-0-only template
  (``R: <entity> shape >``), never revisited in stage 1;
* ``C5`` rare / complex — a rare composed template asking for three facts at once (depth 3 vs 1).

Prompts end with ``"\\nA:"`` (``">"`` for C4) and targets start with a space, so word-level tokenisation
of prompt and prompt + target agree at the boundary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ilp_diag.records import SampleRecord

__all__ = ["ATTRS", "GROUPS", "PlantedWorld", "WorldPretrainTask", "build_world"]

ATTRS: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "gold", "gray", "pink", "teal", "brown"),
    "city": ("paris", "lima", "oslo", "rome", "cairo", "quito", "delhi", "seoul"),
    "shape": ("cube", "cone", "ring", "star", "disk", "oval"),
}
GROUPS = ("control", "C1", "C2", "C3", "C4", "C5")
_CONS = "bdfgklmnprstvz"
_VOW = "aeiou"


def _names(rng: random.Random, k: int) -> list[str]:
    out: set[str] = set()
    while len(out) < k:
        out.add("".join(rng.choice(_CONS) + rng.choice(_VOW) for _ in range(2)) + rng.choice("nrs"))
    return sorted(out)


def qa_prompt(entity: str, attr: str) -> str:
    """The common question template."""
    return f"Q: {attr} of {entity} ?\nA:"


@dataclass
class PlantedWorld:
    """The world: facts, the pre-training pairs and the SFT records with their planted group."""

    seed: int
    entities_pre: list[str]
    entities_new: list[str]
    facts: dict[tuple[str, str], str]
    pretrain_pairs: list[tuple[str, str]]
    records: list[SampleRecord]
    group: dict[int, str]
    fpre_probe: list[tuple[str, str]] = field(default_factory=list)

    def words(self) -> list[str]:
        """Every word of the world (for a word-level tokenizer)."""
        vals = [v for vs in ATTRS.values() for v in vs]
        return ["Q", "A", "R", "of", "and", *ATTRS, *vals, *self.entities_pre, *self.entities_new]

    def tokenizer(self) -> Any:
        """A word-level tokenizer (``papercore.testing.build_word_tokenizer``) covering the world."""
        from papercore.testing.builders import build_word_tokenizer

        return build_word_tokenizer(
            self.words(),
            texts=[p + t for p, t in self.pretrain_pairs[:50]]
            + [r.prompt + r.target for r in self.records],
        )

    def records_of(self, group: str) -> list[SampleRecord]:
        return [r for r in self.records if self.group[r.idx] == group]


def build_world(
    seed: int = 0,
    n_pre: int = 48,
    n_control: int = 120,
    n_c1: int = 16,
    n_c2: int = 16,
    n_c3_clusters: int = 6,
    n_c4: int = 16,
    n_c5: int = 6,
    n_stage0_controls: int = 0,
) -> PlantedWorld:
    """Build a planted world (deterministic in ``seed``). Stage 0 = C4 samples + ``n_stage0_controls``
    controls; stage 1 = everything else."""
    rng = random.Random(seed)
    n_new = n_c1 + n_c3_clusters
    names = _names(rng, n_pre + n_new)
    rng.shuffle(names)
    pre, new = sorted(names[:n_pre]), sorted(names[n_pre:])
    facts = {(e, a): rng.choice(vs) for e in pre + new for a, vs in ATTRS.items()}
    # shapes are never pre-trained: stage 0 (C4) teaches them, stage 1 never revisits them
    pre_facts = [(e, a) for e in pre for a in ATTRS if a != "shape"]
    pretrain = [(qa_prompt(e, a), " " + facts[(e, a)]) for e, a in pre_facts]
    # SFT: disjoint (entity, attr) pairs for control / C2 / C4 / C5
    cand = list(pre_facts)
    rng.shuffle(cand)
    c2_pairs, ctrl_pairs = cand[:n_c2], cand[n_c2 : n_c2 + n_control]
    shape_ents = list(pre)
    rng.shuffle(shape_ents)
    recs: list[SampleRecord] = []
    group: dict[int, str] = {}

    def add(prompt: str, target: str, g: str, stage: int) -> None:
        i = len(recs)
        recs.append(SampleRecord(i, prompt, target, stage, task=g))
        group[i] = g

    for j, (e, a) in enumerate(ctrl_pairs):
        add(qa_prompt(e, a), " " + facts[(e, a)], "control", 0 if j < n_stage0_controls else 1)
    for e, a in c2_pairs:
        wrong = rng.choice([v for v in ATTRS[a] if v != facts[(e, a)]])
        add(qa_prompt(e, a), " " + wrong, "C2", 1)
    for e in new[:n_c1]:
        a = rng.choice(["color", "city"])
        add(qa_prompt(e, a), " " + facts[(e, a)], "C1", 1)
    for e in new[n_c1 : n_c1 + n_c3_clusters]:
        for v in rng.sample(ATTRS["city"], 3):
            add(qa_prompt(e, "city"), " " + v, "C3", 1)
    for e in shape_ents[:n_c4]:
        add(f"R: {e} shape >", " " + facts[(e, "shape")], "C4", 0)
    for _ in range(n_c5):
        e1, e2, e3 = rng.sample(pre, 3)
        add(
            f"Q: color of {e1} and {e2} and {e3} ?\nA:",
            f" {facts[(e1, 'color')]} {facts[(e2, 'color')]} {facts[(e3, 'color')]}",
            "C5",
            1,
        )
    probe = [(qa_prompt(e, a), " " + facts[(e, a)]) for e, a in pre_facts]
    return PlantedWorld(seed, pre, new, facts, pretrain, recs, group, probe)


class WorldPretrainTask:
    """``papercore.testing.train_tiny_lm`` task: uniform draws of the world's pre-training pairs."""

    name = "ilp_world"

    def __init__(self, world: PlantedWorld):
        self.world = world

    def params(self) -> dict[str, Any]:
        return {"seed": self.world.seed, "pairs": self.world.pretrain_pairs}

    def sample(self, rng: random.Random) -> tuple[str, str]:
        return rng.choice(self.world.pretrain_pairs)
