"""SFT export in TRL's prompt/completion format, and the baselines in the same shape.

Every dataset here has the columns ``prompt``, ``completion`` (TRL ``SFTTrainer``: loss on the
completion only), ``problem_id``, ``contrast_type`` (``"hard"`` / ``"soft"`` for CRPS, ``"rs"``,
``"best_path"`` for the baselines) and the released data's fields ``problem`` and ``solution``
(``{"problem", "solution"}`` rows as the authors' ``crps/training/dataset.py`` reads them).

``template`` chooses the prompt: ``"default"`` (our wording), ``"crps"`` (the authors' prompt,
released ``crps/training/dataset.py``: the problem, a newline, "Please reason step by step, and put
your final answer within \\boxed{}.") or any format string with ``{problem}``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crps_synth.llm import STEP_INSTRUCTION
from crps_synth.steps import format_steps
from crps_synth.trajectory import SynthesizedPath

logger = logging.getLogger(__name__)

TEMPLATES = {
    "default": "{problem}\nSolve step by step; end with the answer in \\boxed{{}}.\n",
    "crps": "{problem}\n" + STEP_INSTRUCTION.replace("{}", "{{}}") + "\n",
}
COLUMNS = ("prompt", "completion", "problem_id", "contrast_type", "problem", "solution")


def render_prompt(problem: str, template: str = "default") -> str:
    """The SFT prompt of a problem (see the module doc for ``template``)."""
    fmt = TEMPLATES.get(template, template)
    if "{problem}" not in fmt:
        raise ValueError(
            f"template must be one of {sorted(TEMPLATES)} or a format string with {{problem}}, got {template!r}"
        )
    return fmt.format(problem=problem.strip())


@dataclass
class ExportReport:
    """What an export kept: ``n_input`` rows in, ``n_unique`` after dedupe, ``n_written`` out."""

    n_input: int
    n_unique: int
    n_written: int
    n_unverified_dropped: int = 0

    @property
    def n_duplicates(self) -> int:
        return self.n_input - self.n_unverified_dropped - self.n_unique


def sft_row(
    problem: str,
    steps: Sequence[str],
    problem_id: str,
    contrast_type: str,
    template: str = "default",
) -> dict[str, Any]:
    solution = format_steps(list(steps))
    return {
        "prompt": render_prompt(problem, template),
        "completion": solution,
        "problem_id": str(problem_id),
        "contrast_type": contrast_type,
        "problem": problem,
        "solution": solution,
    }


def dedupe_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Keep the first row of each (problem, normalized completion)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in rows:
        key = (str(r["problem"]).strip(), " ".join(str(r["completion"]).split()))
        if key not in seen:
            seen.add(key)
            out.append(dict(r))
    return out


def oversample(rows: list[dict[str, Any]], target: int, seed: int = 0) -> list[dict[str, Any]]:
    """Repeat rows to ``target`` balancing per-problem counts (problems with fewer rows first) [inferred]."""
    if target < len(rows):
        raise ValueError(f"oversample target {target} is below the {len(rows)} unique rows")
    if not rows:
        raise ValueError("cannot oversample an empty set of rows")
    rng = random.Random(seed)
    by_pid: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_pid.setdefault(r["problem_id"], []).append(r)
    out = list(rows)
    count = {pid: len(v) for pid, v in by_pid.items()}
    while len(out) < target:
        pid = min(count, key=lambda p: (count[p], rng.random()))
        out.append(dict(rng.choice(by_pid[pid])))
        count[pid] += 1
    return out


def to_sft_rows(
    paths: Iterable[SynthesizedPath],
    *,
    template: str = "default",
    dedupe: bool = True,
    oversample_to: int | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], ExportReport]:
    """Verified paths → SFT rows (+ report); unverified paths are dropped and counted."""
    paths = list(paths)
    rows, dropped = [], 0
    for p in paths:
        if not p.verified:
            dropped += 1
            continue
        rows.append(sft_row(p.problem, p.steps, p.problem_id, p.critique.contrast_type, template))
    unique = dedupe_rows(rows) if dedupe else rows
    out = oversample(unique, oversample_to, seed) if oversample_to is not None else unique
    report = ExportReport(len(paths), len(unique), len(out), dropped)
    logger.info(
        "export: %d paths, %d verified, %d unique, %d written",
        len(paths),
        len(rows),
        len(unique),
        len(out),
    )
    return out, report


def rows_to_dataset(rows: Sequence[Mapping[str, Any]]):
    """A ``datasets.Dataset`` with the export columns (also when ``rows`` is empty)."""
    from datasets import Dataset

    return Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS})


def to_sft_dataset(
    paths: Iterable[SynthesizedPath],
    *,
    template: str = "default",
    dedupe: bool = True,
    oversample_to: int | None = None,
    seed: int = 0,
):
    """Verified paths → ``datasets.Dataset`` in TRL prompt/completion format (see the module doc)."""
    rows, _ = to_sft_rows(
        paths, template=template, dedupe=dedupe, oversample_to=oversample_to, seed=seed
    )
    return rows_to_dataset(rows)


def rejection_sampling_baseline(
    generator: Any,
    verifier: Any,
    problems: Iterable[Mapping[str, Any]],
    n_samples: int = 10,
    *,
    temperature: float = 0.7,
    seed: int = 0,
    template: str = "default",
    dedupe: bool = True,
):
    """RFT / rejection sampling: ``n_samples`` full solutions per problem from the explorer
    (``generator.rollout(problem, [], temperature, seed=...)``), keep every verified-correct one
    (deduplicated). Returns a ``Dataset`` with ``contrast_type="rs"``."""
    from crps_synth.pipeline import normalize_problems

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    rows = []
    for i, prob in enumerate(normalize_problems(problems)):
        for j in range(n_samples):
            steps = generator.rollout(
                prob["problem"], [], temperature, seed=seed * 100003 + i * 1009 + j
            )
            ans = verifier.extract("\n".join(steps))
            if ans is not None and verifier.equivalent(ans, prob["gold"]):
                rows.append(sft_row(prob["problem"], steps, prob["id"], "rs", template))
    return rows_to_dataset(dedupe_rows(rows) if dedupe else rows)


def best_path_baseline(explored: Iterable[Any], *, template: str = "default"):
    """MCTS best path: τ+ of each problem (shortest correct, ties by max Q). ``explored`` holds
    ``explore``-stage rows (dicts with ``problem_id``, ``problem``, ``trajectories``) or
    :class:`~crps_synth.mcts.MCTSTree` objects (ids = their order)."""
    from crps_synth.sampling import select_anchor
    from crps_synth.trajectory import Trajectory

    rows = []
    for i, item in enumerate(explored):
        if isinstance(item, Mapping):
            pid, problem = str(item["problem_id"]), item["problem"]
            trajs = [Trajectory.from_dict(t) for t in item["trajectories"]]
        else:
            pid, problem, trajs = str(i), item.problem, item.trajectories()
        correct = [t for t in trajs if t.is_correct]
        if correct:
            rows.append(sft_row(problem, select_anchor(correct).steps, pid, "best_path", template))
    return rows_to_dataset(rows)
