"""Benchmark loaders from local files: RewardBench (parquet) and RM-Bench (JSON), with their scoring.

Nothing is downloaded. RewardBench's section table, official counts, parquet parsing and section
scoring are shared in :mod:`papercore.rewardbench`; E-GRM scores with ``weights="official"``:
per-subset accuracy, then each section's score is the example-count-weighted mean of its subsets
with RewardBench's official counts (``math-prm`` counted as 984, "upweighting to be equal to
code"), and the overall score is the mean of the four sections. RM-Bench compares each of 3
chosen responses (concise, detailed, detailed+markdown) with each of 3 rejected ones: ``M[i][j] = acc(chosen_i > rejected_j)``; *hard* = mean of the upper
triangle (chosen less styled than rejected), *normal* = the diagonal, *easy* = the lower triangle.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from egrm_reward.errors import DataFormatError, EmptyAnswersError
from papercore.errors import MalformedInputError
from papercore.rewardbench import (
    REWARDBENCH_COUNTS,
    REWARDBENCH_SECTIONS,
    read_rewardbench_parquet,
    section_scores,
)

# the section table and official counts now live in papercore.rewardbench; kept importable from here
__all__ = [
    "REWARDBENCH_COUNTS",
    "REWARDBENCH_SECTIONS",
    "PreferencePair",
    "RMBenchItem",
    "evaluate_rewardbench",
    "evaluate_rmbench",
    "judge_pairs",
    "load_rewardbench",
    "load_rmbench",
    "rewardbench_scores",
    "rmbench_scores",
]


@dataclass
class PreferencePair:
    """One pairwise preference example."""

    prompt: str
    chosen: str
    rejected: str
    subset: str = ""
    id: str = ""


def load_rewardbench(path: str | Path) -> list[PreferencePair]:
    """Read a RewardBench parquet file (columns ``prompt, chosen, rejected, subset``; ``id`` optional)."""
    try:
        rows = read_rewardbench_parquet(path)
    except MalformedInputError as e:
        raise DataFormatError(str(e)) from None
    out = [
        PreferencePair(r["prompt"], r["chosen"], r["rejected"], r["subset"], str(r.get("id", i)))
        for i, r in enumerate(rows)
    ]
    if not out:
        raise EmptyAnswersError(f"{path}: no rows")
    return out


def rewardbench_scores(correct_by_subset: dict[str, Sequence[bool]]) -> dict[str, Any]:
    """Per-subset accuracy, section scores (count-weighted) and the overall mean of sections.

    Subsets missing from the official table are weighted by their observed counts; sections with no
    observed subset are left out of ``sections`` and of ``overall``.
    """
    if not correct_by_subset:
        raise EmptyAnswersError("rewardbench_scores got no subsets")
    try:
        return section_scores(correct_by_subset, weights="official")
    except MalformedInputError as e:
        raise (
            EmptyAnswersError(str(e)) if "no outcome" in str(e) else DataFormatError(str(e))
        ) from None


@dataclass
class RMBenchItem:
    """One RM-Bench example: 3 chosen and 3 rejected responses of increasing style."""

    prompt: str
    chosen: list[str]
    rejected: list[str]
    domain: str = ""
    id: str = ""


def load_rmbench(path: str | Path) -> list[RMBenchItem]:
    """Read RM-Bench's released JSON (a list of ``{id, prompt, chosen: [3], rejected: [3], domain}``;
    :func:`papercore.rewardbench.read_rm_bench`, shared with srm)."""
    from papercore.errors import MalformedInputError
    from papercore.rewardbench import read_rm_bench

    try:
        recs = read_rm_bench(path)
    except MalformedInputError as e:
        raise DataFormatError(str(e)) from None
    return [
        RMBenchItem(r["prompt"], r["chosen"], r["rejected"], r["domain"] or "", str(r["id"]))
        for r in recs
    ]


def rmbench_scores(correct: np.ndarray) -> dict[str, Any]:
    """RM-Bench's 3×3 matrix from ``correct[n, i, j]`` (chosen_i judged better than rejected_j).

    Returns ``matrix`` (3×3 accuracies), ``hard`` (upper triangle mean), ``normal`` (diagonal),
    ``easy`` (lower triangle) and ``avg`` (mean of all 9 cells).
    """
    c = np.asarray(correct, dtype=float)
    if c.ndim != 3 or c.shape[1:] != (3, 3) or c.shape[0] == 0:
        raise DataFormatError(f"expected correct[n, 3, 3] with n >= 1, got shape {c.shape}")
    m = c.mean(0)
    return {
        "matrix": m.tolist(),
        "hard": float(np.triu(m, 1).sum() / 3),
        "normal": float(np.diag(m).mean()),
        "easy": float(np.tril(m, -1).sum() / 3),
        "avg": float(m.mean()),
    }


def judge_pairs(
    judge: Callable[[list[dict[str, str]]], list[Any]],
    pairs: Sequence[tuple[str, str, str]],
    *,
    seed: int = 0,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[bool], list[Any]]:
    """Judge ``(prompt, chosen, rejected)`` triples with a random (seeded) A/B orientation each.

    Returns whether each verdict picked ``chosen`` (a tie counts as 0.5 → False) and the raw results.
    """
    rng = random.Random(seed)
    flips = [rng.random() < 0.5 for _ in pairs]
    items = [
        {"prompt": p, "response_a": r if f else c, "response_b": c if f else r}
        for (p, c, r), f in zip(pairs, flips, strict=True)
    ]
    results: list[Any] = []
    for s in range(0, len(items), batch_size):
        results.extend(judge(items[s : s + batch_size]))
        if on_batch:
            on_batch(min(batch_size, len(items) - s))
    correct = [res.answer == ("B" if f else "A") for res, f in zip(results, flips, strict=True)]
    return correct, results


def evaluate_rewardbench(
    judge: Any, pairs: Sequence[PreferencePair], *, seed: int = 0, **kw: Any
) -> dict[str, Any]:
    """Judge every RewardBench pair and score it (see :func:`rewardbench_scores`)."""
    correct, results = judge_pairs(
        judge, [(p.prompt, p.chosen, p.rejected) for p in pairs], seed=seed, **kw
    )
    by = defaultdict(list)
    for p, c in zip(pairs, correct, strict=True):
        by[p.subset].append(c)
    return {**rewardbench_scores(by), "results": results, "correct": correct}


def evaluate_rmbench(
    judge: Any, items: Sequence[RMBenchItem], *, seed: int = 0, **kw: Any
) -> dict[str, Any]:
    """Judge the 9 chosen × rejected comparisons of every RM-Bench item (see :func:`rmbench_scores`)."""
    triples = [
        (it.prompt, it.chosen[i], it.rejected[j])
        for it in items
        for i in range(3)
        for j in range(3)
    ]
    correct, results = judge_pairs(judge, triples, seed=seed, **kw)
    arr = np.array(correct, dtype=float).reshape(len(items), 3, 3)
    return {**rmbench_scores(arr), "results": results, "correct": correct}
