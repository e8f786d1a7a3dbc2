"""Training records (spec §3 ``SampleRecord``) and their validation at the boundary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ilp_diag.errors import RecordError

__all__ = ["SampleRecord", "records_from_rows", "records_to_rows", "validate_records"]


@dataclass(frozen=True)
class SampleRecord:
    """One SFT training sample (x_i, y_i).

    Attributes:
        idx: unique integer id of the sample (survives shuffling; the loss callback keys on it).
        prompt: the training input x_i, as the trainer saw it (plain text).
        target: the training target y_i (the completion).
        stage_id: sequential-SFT stage the sample belongs to (0 = first stage).
        task: optional task / domain name for per-task breakdowns.
    """

    idx: int
    prompt: str
    target: str
    stage_id: int = 0
    task: str | None = None


def validate_records(records: Iterable[SampleRecord | Mapping[str, Any]]) -> list[SampleRecord]:
    """Coerce rows to :class:`SampleRecord` and check them: non-empty targets, unique ``idx``.

    Raises:
        RecordError: an empty list, a row without ``prompt``/``target``, an empty target or a duplicate ``idx``.
    """
    out = [r if isinstance(r, SampleRecord) else _from_row(r, i) for i, r in enumerate(records)]
    if not out:
        raise RecordError("expected at least one training record, got an empty list")
    seen: dict[int, int] = {}
    for pos, r in enumerate(out):
        if not isinstance(r.idx, int) or isinstance(r.idx, bool):
            raise RecordError(
                f"record {pos}: idx must be an int, got {type(r.idx).__name__} {r.idx!r}"
            )
        if not isinstance(r.prompt, str) or not r.prompt:
            raise RecordError(
                f"record idx={r.idx}: expected a non-empty prompt string, got {r.prompt!r}"
            )
        if not isinstance(r.target, str) or not r.target.strip():
            raise RecordError(
                f"record idx={r.idx}: expected a non-empty target string, got {r.target!r}"
            )
        if r.idx in seen:
            raise RecordError(
                f"duplicate idx {r.idx} at positions {seen[r.idx]} and {pos}; expected unique sample ids"
            )
        seen[r.idx] = pos
    return out


def _from_row(row: Mapping[str, Any], pos: int) -> SampleRecord:
    if not isinstance(row, Mapping):
        raise RecordError(
            f"record {pos}: expected a SampleRecord or a mapping, got {type(row).__name__}"
        )
    missing = [k for k in ("idx", "prompt") if k not in row]
    target = row.get("target", row.get("completion"))
    if target is None:
        missing.append("target")
    if missing:
        raise RecordError(f"record {pos}: missing field(s) {missing}; got keys {sorted(row)}")
    return SampleRecord(
        idx=row["idx"],
        prompt=row["prompt"],
        target=target,
        stage_id=int(row.get("stage_id", 0) or 0),
        task=row.get("task"),
    )


def records_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[SampleRecord]:
    """Records from JSONL-style rows (``idx, prompt, target|completion[, stage_id, task]``), validated."""
    return validate_records(list(rows))


def records_to_rows(records: Iterable[SampleRecord]) -> list[dict[str, Any]]:
    """Plain dict rows (for ``datasets.Dataset.from_list`` / JSONL)."""
    return [asdict(r) for r in records]
