from __future__ import annotations

import pytest
import torch

from epi import (
    MissingTaskIdError,
    MixedTaskWindowError,
    TaskHomogeneousBatchSampler,
    TaskIdCollator,
)
from epi.data import batch_task_id


def test_sampler_whole_windows_of_one_task() -> None:
    ids = [0] * 37 + [1] * 21 + [2] * 9
    s = TaskHomogeneousBatchSampler(ids, batch_size=4, accumulation_steps=2, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == (37 // 8 + 21 // 8 + 9 // 8) * 2
    for w in range(0, len(batches), 2):
        window = batches[w] + batches[w + 1]
        assert len({ids[i] for i in window}) == 1
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))
    assert list(s) != batches  # next epoch reshuffles
    with pytest.raises(ValueError, match="whole window"):
        TaskHomogeneousBatchSampler([0, 1], batch_size=4)


def test_collator_keeps_task_id_and_mixed_batches_raise() -> None:
    def inner(feats):  # drops unknown keys, as TRL's collator does
        return {"input_ids": torch.tensor([f["input_ids"] for f in feats])}

    col = TaskIdCollator(inner)
    out = col([{"input_ids": [1, 2], "task_id": 3}, {"input_ids": [3, 4], "task_id": 3}])
    assert out["task_id"].tolist() == [3, 3]
    assert batch_task_id(out["task_id"]) == 3
    with pytest.raises(MixedTaskWindowError, match=r"\[0, 1\]"):
        batch_task_id(torch.tensor([0, 1]))
    with pytest.raises(MissingTaskIdError):
        col([{"input_ids": [1], "task_id": 0}, {"input_ids": [2]}])
    assert batch_task_id(None) is None
