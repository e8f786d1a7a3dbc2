"""JSONL → tokenized ``datasets.Dataset`` for the CLI (prompt/completion or text rows, optional task field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from epi.errors import EPIError

__all__ = ["DataFormatError", "load_sft_jsonl"]


class DataFormatError(EPIError, ValueError):
    """A training JSONL row lacks the expected fields."""


def load_sft_jsonl(
    path: str | Path, tokenizer: Any, *, task_field: str | None = None, max_length: int = 256
) -> tuple[Any, dict[str, int]]:
    """Rows ``{"prompt", "completion"}`` (loss on the completion only) or ``{"text"}`` (loss on all tokens),
    plus ``task_field`` (any value; mapped to integer ``task_id`` in sorted order).

    Returns the dataset (``input_ids``, ``labels``, ``attention_mask`` [, ``task_id``]) and the task → id map.
    """
    import datasets

    from papercore.io import read_jsonl

    rows = list(read_jsonl(Path(path)))
    if not rows:
        raise DataFormatError(
            f"{path}: no rows; expected JSONL with prompt/completion or text fields"
        )
    tasks: dict[str, int] = {}
    if task_field:
        missing = [i for i, r in enumerate(rows) if task_field not in r]
        if missing:
            raise DataFormatError(
                f"{path}: {len(missing)} row(s) lack the task field {task_field!r} (first at line {missing[0] + 1})"
            )
        tasks = {str(t): i for i, t in enumerate(sorted({str(r[task_field]) for r in rows}))}
    eos = tokenizer.eos_token or ""
    out: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
    if task_field:
        out["task_id"] = []
    for i, r in enumerate(rows):
        if "prompt" in r and "completion" in r:
            p = tokenizer(str(r["prompt"]), add_special_tokens=False)["input_ids"]
            c = tokenizer(str(r["completion"]) + eos, add_special_tokens=False)["input_ids"]
            ids, labels = p + c, [-100] * len(p) + c
        elif "text" in r:
            ids = tokenizer(str(r["text"]) + eos, add_special_tokens=False)["input_ids"]
            labels = list(ids)
        else:
            raise DataFormatError(
                f"{path}: line {i + 1} has fields {sorted(r)}; expected prompt+completion or text"
            )
        ids, labels = ids[:max_length], labels[:max_length]
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["attention_mask"].append([1] * len(ids))
        if task_field:
            out["task_id"].append(tasks[str(r[task_field])])
    return datasets.Dataset.from_dict(out), tasks


def pad_collator(pad_id: int):
    """Right-pad ``input_ids`` / ``attention_mask`` with ``pad_id`` / 0 and ``labels`` with -100."""
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        n = max(len(f["input_ids"]) for f in features)
        batch = {
            "input_ids": [f["input_ids"] + [pad_id] * (n - len(f["input_ids"])) for f in features],
            "attention_mask": [
                f["attention_mask"] + [0] * (n - len(f["input_ids"])) for f in features
            ],
            "labels": [f["labels"] + [-100] * (n - len(f["labels"])) for f in features],
        }
        return {k: torch.tensor(v) for k, v in batch.items()}

    return collate
