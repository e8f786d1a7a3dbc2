"""Trajectories → per-step guard samples and a TRL dataset (spec §2.3).

Each trajectory is exploded into one sample per labelled step: history prefix + candidate action.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ts_guard.errors import DatasetError
from ts_guard.prompt import _counter, build_guard_prompt
from ts_guard.rewards import check_rating
from ts_guard.types import GuardInput, Step

logger = logging.getLogger(__name__)

__all__ = ["StepLabel", "Trajectory", "GuardSample", "trajectory_samples", "steps_to_dataset"]


@dataclass
class StepLabel:
    """Gold labels of one step: malicious request, prompt injection, harmfulness rating ∈ {0, 0.5, 1}."""

    gt_mur: bool
    gt_pi: bool
    gt_rating: float

    def __post_init__(self) -> None:
        self.gt_rating = check_rating(self.gt_rating, "step label")
        self.gt_mur, self.gt_pi = bool(self.gt_mur), bool(self.gt_pi)


@dataclass
class Trajectory:
    """An agent episode: request, tool specs, steps, and a label per step (``None`` = not a sample)."""

    user_request: str
    tools: list[dict[str, Any]]
    steps: list[Step]
    labels: list[StepLabel | None]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.steps):
            raise DatasetError(
                f"a trajectory needs one label per step: {len(self.steps)} steps, {len(self.labels)} labels"
            )


@dataclass
class GuardSample:
    """One step-level sample: the guard input and its gold labels."""

    input: GuardInput
    label: StepLabel
    source: str = ""
    step_idx: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def unsafe(self) -> bool:
        """Gold "unsafe" in the strict sense (rating 1.0)."""
        return self.label.gt_rating == 1.0


def trajectory_samples(
    trajs: Iterable[Trajectory], *, sample_benign_every: int = 1, seed: int = 0
) -> list[GuardSample]:
    """One :class:`GuardSample` per labelled step; benign steps (rating 0, no flags) are kept 1 in
    ``sample_benign_every`` (at random, seeded) to balance classes as in the released data."""
    if sample_benign_every < 1:
        raise DatasetError(f"sample_benign_every must be >= 1, got {sample_benign_every}")
    rng = random.Random(seed)
    out: list[GuardSample] = []
    for traj in trajs:
        for t, (step, label) in enumerate(zip(traj.steps, traj.labels, strict=True)):
            if label is None:
                continue
            benign = label.gt_rating == 0.0 and not label.gt_mur and not label.gt_pi
            if benign and sample_benign_every > 1 and rng.randrange(sample_benign_every) != 0:
                continue
            x = GuardInput(traj.user_request, traj.tools, list(traj.steps[:t]), step.action)
            out.append(GuardSample(x, label, traj.source, t))
    return out


def steps_to_dataset(
    trajs: Iterable[Trajectory] | Iterable[GuardSample],
    *,
    template: str | Path | None = None,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = 4096,
    sample_benign_every: int = 1,
    chat: bool = True,
    seed: int = 0,
    stats: dict[str, int] | None = None,
):
    """A ``datasets.Dataset`` with columns ``prompt, gt_mur, gt_pi, gt_rating, source, step_idx``.

    Prompts longer than ``max_prompt_tokens`` (``tokenizer`` tokens, whitespace words without one) are
    dropped, not truncated, as in the released training data; the count is logged and written to
    ``stats["dropped_overlong"]`` (with ``stats["kept"]``). Empty or one-class results raise
    :class:`DatasetError` (GRPO advantages would all be zero).
    """
    import datasets

    items = list(trajs)
    samples = [s for s in items if isinstance(s, GuardSample)]
    trajectories = [t for t in items if isinstance(t, Trajectory)]
    if len(samples) + len(trajectories) != len(items):
        raise DatasetError("steps_to_dataset expects Trajectory or GuardSample items")
    samples += trajectory_samples(trajectories, sample_benign_every=sample_benign_every, seed=seed)
    count = _counter(tokenizer)
    rows: dict[str, list[Any]] = {
        k: [] for k in ("prompt", "gt_mur", "gt_pi", "gt_rating", "source", "step_idx")
    }
    dropped = 0
    for s in samples:
        text = build_guard_prompt(s.input, template=template, chat=False)
        if max_prompt_tokens is not None and count(text) > max_prompt_tokens:  # type: ignore[arg-type]
            dropped += 1
            continue
        rows["prompt"].append([{"role": "user", "content": text}] if chat else text)
        rows["gt_mur"].append(s.label.gt_mur)
        rows["gt_pi"].append(s.label.gt_pi)
        rows["gt_rating"].append(s.label.gt_rating)
        rows["source"].append(s.source)
        rows["step_idx"].append(s.step_idx)
    if dropped:
        logger.warning(
            "steps_to_dataset: dropped %d overlong prompts (> %s tokens)",
            dropped,
            max_prompt_tokens,
        )
    if stats is not None:
        stats.update(dropped_overlong=dropped, kept=len(rows["prompt"]))
    if not rows["prompt"]:
        raise DatasetError(f"no samples left (dropped {dropped} overlong of {len(samples)})")
    labels = set(zip(rows["gt_mur"], rows["gt_pi"], rows["gt_rating"], strict=False))
    if len(labels) < 2:
        raise DatasetError(
            f"all {len(rows['prompt'])} samples have the same labels {labels}: GRPO needs both classes"
        )
    return datasets.Dataset.from_dict(rows)
