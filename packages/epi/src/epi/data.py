"""Data plumbing for per-task importance: a collator that keeps ``task_id`` and a sampler whose gradient
accumulation windows are task-homogeneous."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from epi.errors import MissingTaskIdError, MixedTaskWindowError

__all__ = ["TaskHomogeneousBatchSampler", "TaskIdCollator", "batch_task_id"]


class TaskIdCollator:
    """Wrap a collator (e.g. TRL's, which drops unknown columns) so the batch carries ``task_key`` as a
    ``LongTensor [B]``. Examples without the key are passed through unchanged (then the batch has none).

    Args:
        inner: the collator to wrap (called on the examples with ``task_key`` removed).
        task_key: the column holding the integer task id.
    """

    def __init__(self, inner: Callable[[list[Any]], Any], task_key: str = "task_id") -> None:
        self.inner = inner
        self.task_key = task_key

    def __call__(self, features: list[Any]) -> Any:
        if not features or not isinstance(features[0], Mapping):
            return self.inner(features)
        ids = [f.get(self.task_key) for f in features]
        have = [i is not None for i in ids]
        if any(have) and not all(have):
            raise MissingTaskIdError(
                f"{have.count(False)} of {len(ids)} examples in a batch lack {self.task_key!r}; expected every "
                "example to carry an integer task id"
            )
        stripped = [{k: v for k, v in f.items() if k != self.task_key} for f in features]
        batch = self.inner(stripped)
        if all(have):
            batch[self.task_key] = torch.as_tensor([int(i) for i in ids], dtype=torch.long)
        return batch


def batch_task_id(value: Any, task_key: str = "task_id") -> int | None:
    """The one task id of a batch's ``task_key`` value (tensor, list or int); None when absent.

    Raises:
        MixedTaskWindowError: the batch mixes task ids.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        vals = value.flatten().tolist()
    elif isinstance(value, (list, tuple)):
        vals = [int(v) for v in value]
    else:
        vals = [int(value)]
    uniq = sorted(set(vals))
    if len(uniq) > 1:
        raise MixedTaskWindowError(
            f"a micro-batch mixes task ids {uniq} in {task_key!r}; per-task importance needs task-homogeneous "
            "batches: use epi.TaskHomogeneousBatchSampler (EPITrainer does so)"
        )
    return int(uniq[0]) if uniq else None


class TaskHomogeneousBatchSampler(Sampler[list[int]]):
    """Batches of one task each, grouped into whole gradient-accumulation windows of one task.

    Per epoch: each task's indices are shuffled, cut into batches of ``batch_size``, grouped into windows of
    ``accumulation_steps`` batches (incomplete batches / windows are dropped so every window is whole), and the
    windows of all tasks are shuffled together.

    Args:
        task_ids: the task id of every example (index order).
        batch_size: examples per (micro-)batch.
        accumulation_steps: batches per optimizer step (``gradient_accumulation_steps``).
        seed: shuffling seed (epoch e uses ``seed + e``).
    """

    def __init__(
        self, task_ids: Sequence[int], batch_size: int, accumulation_steps: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1 or accumulation_steps < 1:
            raise ValueError(
                f"batch_size and accumulation_steps must be ≥ 1, got {batch_size} and {accumulation_steps}"
            )
        if any(t is None for t in task_ids):
            raise MissingTaskIdError("TaskHomogeneousBatchSampler: some examples have no task id")
        self.task_ids = [int(t) for t in task_ids]
        self.batch_size = batch_size
        self.accumulation_steps = accumulation_steps
        self.seed = seed
        self.epoch = 0
        self._by_task: dict[int, list[int]] = {}
        for i, t in enumerate(self.task_ids):
            self._by_task.setdefault(t, []).append(i)
        if not self._by_task or len(self) == 0:
            raise ValueError(
                f"no task has a whole window of {batch_size}×{accumulation_steps} examples "
                f"(examples per task: { {t: len(v) for t, v in self._by_task.items()} })"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _windows(self, epoch: int) -> list[list[list[int]]]:
        rng = random.Random(self.seed + epoch)
        win = self.batch_size * self.accumulation_steps
        windows = []
        for t in sorted(self._by_task):
            idx = list(self._by_task[t])
            rng.shuffle(idx)
            for s in range(0, len(idx) - win + 1, win):
                chunk = idx[s : s + win]
                windows.append(
                    [chunk[b : b + self.batch_size] for b in range(0, win, self.batch_size)]
                )
        rng.shuffle(windows)
        return windows

    def __iter__(self) -> Iterator[list[int]]:
        windows = self._windows(self.epoch)
        self.epoch += 1
        for w in windows:
            yield from w

    def __len__(self) -> int:
        win = self.batch_size * self.accumulation_steps
        return sum(len(v) // win for v in self._by_task.values()) * self.accumulation_steps
