"""Data: Best-of-N aux datasets for branch SFT (spec §2.1), preference pairs and benchmark loaders.

* :class:`BestOfNSelector` + :func:`build_aux_dataset`: ``a* = argmax_{a ∈ cands} Judge(p, r, a)``, kept when
  ``Judge(a*) ≥ min_score``; skipped examples are counted, an empty result raises
  :class:`~srm_reward.errors.EmptyAuxDatasetError`.
* :func:`clean_pairs`: missing fields, chosen == rejected and ties are **skipped and counted**; wrong types raise.
* Loaders: RM-Bench JSON (3 × 3 style matrix → hard / normal / easy), RewardBench parquet (section table,
  parsing and scoring shared in :mod:`papercore.rewardbench`, ``weights="observed"``), JSONL pairs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from papercore.errors import MalformedInputError
from papercore.rewardbench import (
    REWARDBENCH_SECTIONS,
    read_rewardbench_parquet,
    section_of,
    section_scores,
)
from srm_reward.dims import Dimension, get_dimension
from srm_reward.errors import EmptyAuxDatasetError, PreferenceDataError, SRMConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "REWARDBENCH_SECTIONS",
    "AuxBuildStats",
    "BestOfNSelector",
    "build_aux_dataset",
    "clean_pairs",
    "load_jsonl_pairs",
    "load_rewardbench",
    "load_rm_bench",
    "rewardbench_scores",
    "rm_bench_scores",
]

Judge = Callable[[str, str, str, Dimension], float]


class BestOfNSelector:
    """Pick the judge's best of ``n`` candidates; ``None`` when its score is below ``min_score``.

    ``judge(prompt, response, candidate, dimension) -> float`` (an LLM-as-judge or a programmatic checker).
    Ties go to the first candidate (deterministic).
    """

    def __init__(
        self,
        n: int = 4,
        judge: Judge | None = None,
        min_score: float | None = None,
        dimension: Dimension | str | None = None,
    ) -> None:
        if not isinstance(n, int) or n < 1:
            raise SRMConfigError(f"n must be an int >= 1, got {n!r}")
        if judge is None or not callable(judge):
            raise SRMConfigError(
                "BestOfNSelector needs a judge callable (prompt, response, candidate, dimension)"
            )
        self.n, self.judge, self.min_score = n, judge, min_score
        self.dimension = None if dimension is None else get_dimension(dimension)

    def __call__(
        self, p: str, r: str, candidates: Sequence[str], dimension: Dimension | None = None
    ) -> tuple[str | None, float]:
        if not candidates:
            return None, float("-inf")
        dim = dimension or self.dimension
        scores = [float(self.judge(p, r, c, dim)) for c in candidates]
        best = int(np.argmax(scores))
        if self.min_score is not None and scores[best] < self.min_score:
            return None, scores[best]
        return candidates[best], scores[best]


@dataclass
class AuxBuildStats:
    """Counts of :func:`build_aux_dataset`: kept, skipped (all below ``min_score``), mean best score."""

    kept: int = 0
    skipped: int = 0
    best_scores: list[float] = field(default_factory=list)


def build_aux_dataset(
    seed_pairs: Sequence[Mapping[str, str]],
    generator: Any,
    selector: BestOfNSelector,
    dimension: Dimension | str,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    context_fn: Callable[[str, str], str] | None = None,
    return_stats: bool = False,
) -> Any:
    """Best-of-N aux texts for one dimension → ``datasets.Dataset`` (``prompt``, ``completion``, ``dimension``,
    ``score``): ``prompt`` is the branch's input (template filled), ``completion`` the selected aux text.

    Args:
        seed_pairs: rows with ``prompt`` and ``response``.
        generator: a model :class:`~srm_reward.branch.SideBranchModel` (sampled ``selector.n`` times per row,
            seeded) or a callable ``(prompt, response, n, seed) -> list[str]`` (a teacher, an API).
        selector: the :class:`BestOfNSelector`.
        dimension: the branch dimension.
        context_fn: fills ``{context}`` in the template (a model generator uses its own ``context_fn``).
    """
    from datasets import Dataset

    from srm_reward.branch import SideBranchModel

    dim = get_dimension(dimension)
    for i, row in enumerate(seed_pairs):
        if not isinstance(row, Mapping) or "prompt" not in row or "response" not in row:
            raise PreferenceDataError(
                f"seed pair {i} needs 'prompt' and 'response', got {row!r:.120}"
            )
    prompts = [str(r["prompt"]) for r in seed_pairs]
    responses = [str(r["response"]) for r in seed_pairs]
    if isinstance(generator, SideBranchModel):
        cands = generator.sample(prompts, responses, selector.n, temperature=temperature, seed=seed)
        inputs = generator.inputs(prompts, responses)
    elif callable(generator):
        cands = [
            list(generator(p, r, selector.n, seed + i))
            for i, (p, r) in enumerate(zip(prompts, responses, strict=False))
        ]
        inputs = [
            dim.format(
                p, r if dim.depends_on_response else "", context_fn(p, r) if context_fn else ""
            )
            for p, r in zip(prompts, responses, strict=False)
        ]
    else:
        raise SRMConfigError(
            f"generator must be a SideBranchModel or a callable, got {type(generator).__name__}"
        )
    stats = AuxBuildStats()
    rows = []
    for p, r, inp, cs in zip(prompts, responses, inputs, cands, strict=True):
        best, score = selector(p, r, cs, dim)
        if best is None:
            stats.skipped += 1
            continue
        stats.kept += 1
        stats.best_scores.append(score)
        rows.append(
            {"prompt": inp, "completion": " " + best.strip(), "dimension": dim.name, "score": score}
        )
    logger.info(
        "best-of-%d for %s: kept %d, skipped %d (below min_score=%s)",
        selector.n,
        dim.name,
        stats.kept,
        stats.skipped,
        selector.min_score,
    )
    if not rows:
        raise EmptyAuxDatasetError(
            f"best-of-{selector.n} for dimension {dim.name!r} kept no example: all {stats.skipped} were below "
            f"min_score={selector.min_score}; lower min_score or improve the generator"
        )
    ds = Dataset.from_list(rows)
    return (ds, stats) if return_stats else ds


# ---------------------------------------------------------------------- preference pairs
def clean_pairs(
    rows: Sequence[Any], *, source: str = "pairs"
) -> tuple[list[dict[str, Any]], Counter]:
    """Keep usable ``{prompt, chosen, rejected}`` rows; count the skipped ones.

    Skipped (counted): missing/empty fields (``missing_fields``), ``chosen == rejected`` (``identical``), equal
    scores ``score_chosen == score_rejected`` or ``label == "tie"`` (``tie``: Bradley–Terry is undefined).
    Raises :class:`PreferenceDataError` for a row that is not a mapping or a field of the wrong type.
    """
    kept: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise PreferenceDataError(
                f"{source}: row {i} must be an object, got {type(row).__name__}"
            )
        if any(not row.get(k) for k in ("prompt", "chosen", "rejected")):
            skipped["missing_fields"] += 1
            continue
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(row[k], str | list):
                raise PreferenceDataError(
                    f"{source}: row {i} field {k!r} must be a string or chat messages, got {type(row[k]).__name__}"
                )
        if row["chosen"] == row["rejected"]:
            skipped["identical"] += 1
            continue
        sc, sr = row.get("score_chosen"), row.get("score_rejected")
        if str(row.get("label", "")).lower() == "tie" or (
            sc is not None and sr is not None and sc == sr
        ):
            skipped["tie"] += 1
            continue
        kept.append(dict(row))
    if skipped:
        logger.warning("%s: skipped %s", source, dict(skipped))
    return kept, skipped


def load_jsonl_pairs(path: str | Path) -> tuple[list[dict[str, Any]], Counter]:
    """JSONL preference pairs (``prompt``, ``chosen``, ``rejected``, optional scores / label) → cleaned rows
    and skip counts (see :func:`clean_pairs`)."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceDataError(f"pairs file {str(path)!r} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PreferenceDataError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    return clean_pairs(rows, source=str(path))


def load_rm_bench(path: str | Path) -> list[dict[str, Any]]:
    """RM-Bench JSON (a list of ``{id, prompt, chosen: [3], rejected: [3], domain}``) → one pair per cell of
    the 3 × 3 matrix: ``{prompt, chosen, rejected, domain, i, j, level}``.

    Styles 0, 1, 2 = concise, detailed, detailed markdown. ``level``: ``hard`` when the chosen response is
    less styled than the rejected one (``i < j``), ``normal`` on the diagonal, ``easy`` when ``i > j``
    (RM-Bench's upper / diagonal / lower triangle).
    """
    from papercore.rewardbench import read_rm_bench

    try:
        data = read_rm_bench(path)  # shared with e-grm
    except (FileNotFoundError, MalformedInputError) as e:
        raise PreferenceDataError(str(e)) from None
    out = []
    for rec in data:
        ch, rj = rec["chosen"], rec["rejected"]
        for i in range(3):
            for j in range(3):
                level = "hard" if i < j else ("normal" if i == j else "easy")
                out.append(
                    {
                        "id": rec["id"],
                        "prompt": rec["prompt"],
                        "chosen": ch[i],
                        "rejected": rj[j],
                        "domain": rec["domain"] or "unknown",
                        "i": i,
                        "j": j,
                        "level": level,
                    }
                )
    return out


def rm_bench_scores(
    pairs: Sequence[Mapping[str, Any]], correct: Sequence[bool]
) -> dict[str, float]:
    """Accuracy per level (hard / normal / easy), per domain and overall (mean of the three levels)."""
    if len(pairs) != len(correct):
        raise SRMConfigError(f"got {len(pairs)} pairs but {len(correct)} outcomes")
    by: dict[str, list[bool]] = {}
    for p, c in zip(pairs, correct, strict=True):
        by.setdefault(p["level"], []).append(bool(c))
        by.setdefault(f"domain/{p['domain']}", []).append(bool(c))
    out = {k: float(np.mean(v)) for k, v in sorted(by.items())}
    levels = [out[k] for k in ("hard", "normal", "easy") if k in out]
    out["overall"] = float(np.mean(levels)) if levels else float("nan")
    return out


def load_rewardbench(path: str | Path) -> list[dict[str, Any]]:
    """RewardBench parquet (``prompt, chosen, rejected, subset, id``) → rows with their ``section``
    (``"Other"`` for a subset outside RewardBench's four sections)."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceDataError(f"RewardBench file {str(path)!r} does not exist")
    try:
        rows = read_rewardbench_parquet(path)
    except MalformedInputError as e:
        raise PreferenceDataError(str(e)) from None
    for r in rows:
        r["section"] = section_of(r["subset"])
    return rows


def rewardbench_scores(
    rows: Sequence[Mapping[str, Any]], correct: Sequence[bool]
) -> dict[str, float]:
    """RewardBench scoring (:func:`papercore.rewardbench.section_scores` with ``weights="observed"``):
    per-subset accuracy; a section is the example-count-weighted mean of its subsets (Reasoning: ``math-prm``
    weighted as much as all ``hep-*`` code subsets together, as rewardbench does); ``score`` = the mean of
    the sections present."""
    if len(rows) != len(correct):
        raise SRMConfigError(f"got {len(rows)} rows but {len(correct)} outcomes")
    per: dict[str, list[bool]] = {}
    for r, c in zip(rows, correct, strict=True):
        per.setdefault(r["subset"], []).append(bool(c))
    try:
        res = section_scores(per, weights="observed")
    except MalformedInputError as e:
        raise SRMConfigError(str(e)) from None
    out = {f"subset/{k}": v for k, v in sorted(res["subsets"].items())}
    out.update({f"section/{k}": v for k, v in res["sections"].items()})
    out["score"] = res["overall"]
    return out
