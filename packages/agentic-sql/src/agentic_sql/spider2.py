"""Spider 2.0-lite, local SQLite part: scoring against the official gold result CSVs (``metric="spider2"``).

Re-implements the comparison of xlang-ai/Spider2 ``spider2-lite/evaluation_suite/evaluate.py`` (SQL
mode, ``local*`` instances) on top of the sandbox:

* the gold answers are the CSV files ``<gold_dir>/exec_result/<instance_id>.csv`` and its variants
  ``<instance_id>_a.csv``, ``_b.csv``, ... (any accepted: the prediction must match one of them);
  ``<gold_dir>/spider2lite_eval.jsonl`` gives per instance ``condition_cols`` (the gold columns
  that are checked; empty = all) and ``ignore_order``;
* the prediction is executed and its result goes through the same CSV round trip as the official
  script's (``DataFrame`` -> ``to_csv`` -> ``read_csv``), so values get pandas' types on both sides
  (``'1'`` read back as the number 1, empty strings as NaN, ...);
* **each checked gold column must equal some predicted column** (column names and extra predicted
  columns do not matter): same length, values pairwise equal, numbers within an absolute
  tolerance of ``0.01`` (``math.isclose(abs_tol=1e-2)``), NaN equal to NaN; with ``ignore_order``
  both columns are sorted first (by ``(is None, str(x), is number)``, the script's key);
* several gold variants: the condition columns apply to each (a list of lists gives one per
  variant), the prediction is correct if it matches any variant.

Differences from the script, on purpose: a prediction that fails or times out is wrong (as
there); a missing gold CSV or evaluation entry raises (the script would crash or reuse a stale
score); when the only gold file is ``<id>_a.csv`` it is used (the script would look for
``<id>.csv``). The comparison needs pandas (a dependency of ``datasets``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "SPIDER2_TOLERANCE",
    "Spider2Gold",
    "evaluate_spider2_sqlite",
    "load_spider2_gold",
    "read_spider2_predictions",
    "result_to_frame",
    "spider2_match",
    "spider2_table_match",
]

#: absolute tolerance of numeric comparisons in the official script
SPIDER2_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Spider2Gold:
    """The official answer of one instance: gold CSV files and the comparison settings."""

    instance_id: str
    csv_paths: tuple[Path, ...]
    condition_cols: Any = field(default_factory=list)
    ignore_order: bool = False

    def frames(self) -> list[Any]:
        import pandas as pd

        return [pd.read_csv(p) for p in self.csv_paths]


def load_spider2_gold(gold_dir: str | os.PathLike) -> dict[str, Spider2Gold]:
    """The official gold of Spider 2.0-lite: ``{instance_id: Spider2Gold}``.

    ``gold_dir`` is ``spider2-lite/evaluation_suite/gold`` (``spider2lite_eval.jsonl`` and
    ``exec_result/``). Instances without a gold CSV are left out (logged).

    Raises:
        FileNotFoundError: the folder, its ``spider2lite_eval.jsonl`` or ``exec_result/`` is missing.
        MalformedDatasetError: a line of ``spider2lite_eval.jsonl`` is not a JSON object with
            ``instance_id``.
    """
    from agentic_sql.errors import MalformedDatasetError

    root = Path(gold_dir)
    meta, results = root / "spider2lite_eval.jsonl", root / "exec_result"
    for p in (root, meta, results):
        if not p.exists():
            raise FileNotFoundError(
                f"Spider 2.0-lite gold not found: {p} (expected the evaluation_suite/gold folder "
                f"with spider2lite_eval.jsonl and exec_result/)"
            )
    by_id: dict[str, list[Path]] = {}
    pattern = re.compile(r"^(?P<id>.+?)(_[a-z])?\.csv$")
    for f in sorted(results.iterdir()):
        m = pattern.match(f.name)
        if m:
            by_id.setdefault(m.group("id"), []).append(f)
    out: dict[str, Spider2Gold] = {}
    no_csv = 0
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise MalformedDatasetError(f"{meta}: line {n} is not JSON: {err.msg}") from None
        if not isinstance(e, dict) or "instance_id" not in e:
            raise MalformedDatasetError(f"{meta}: line {n} lacks instance_id")
        iid = str(e["instance_id"])
        paths = _gold_files(iid, by_id)
        if not paths:
            no_csv += 1
            continue
        out[iid] = Spider2Gold(
            instance_id=iid,
            csv_paths=tuple(paths),
            condition_cols=e.get("condition_cols") or [],
            ignore_order=bool(e.get("ignore_order", False)),
        )
    if no_csv:
        logger.info("%s: %d instances have no gold CSV in %s", meta, no_csv, results)
    return out


def _gold_files(iid: str, by_id: dict[str, list[Path]]) -> list[Path]:
    """``<iid>.csv`` and ``<iid>_<letter>.csv`` (the script's ``^id(_[a-z])?\\.csv$``)."""
    exact = re.compile(rf"^{re.escape(iid)}(_[a-z])?\.csv$")
    cands = by_id.get(iid, [])
    # ids such as "local028" must not collect "local028_b" twice or pick "local0281"
    return [p for p in cands if exact.match(p.name)]


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------


def _isna(v: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _sort_key(x: Any) -> tuple:
    return (x is None, str(x), isinstance(x, (int, float)))


def _vectors_match(gold: list[Any], pred: list[Any], tol: float, ignore_order: bool) -> bool:
    if ignore_order:
        gold, pred = sorted(gold, key=_sort_key), sorted(pred, key=_sort_key)
    if len(gold) != len(pred):
        return False
    for a, b in zip(gold, pred, strict=True):
        if _isna(a) and _isna(b):
            continue
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if not math.isclose(float(a), float(b), abs_tol=tol):
                return False
        elif a != b:
            return False
    return True


def spider2_table_match(
    pred: Any,
    gold: Any,
    condition_cols: Sequence[int] = (),
    ignore_order: bool = False,
    *,
    tol: float = SPIDER2_TOLERANCE,
) -> bool:
    """The official ``compare_pandas_table``: every checked gold column equals some predicted column.

    Args:
        pred, gold: ``pandas.DataFrame`` results (read back from CSV, see :func:`result_to_frame`).
        condition_cols: positions of the gold columns that are checked (empty = all).
        ignore_order: sort each column before comparing.
    """
    gold_cols = gold.iloc[:, list(condition_cols)] if list(condition_cols) else gold
    g_cols = gold_cols.transpose().values.tolist()
    p_cols = pred.transpose().values.tolist()
    return all(any(_vectors_match(g, p, tol, ignore_order) for p in p_cols) for g in g_cols)


def spider2_match(
    pred: Any,
    golds: Sequence[Any],
    condition_cols: Any = (),
    ignore_order: bool = False,
    *,
    tol: float = SPIDER2_TOLERANCE,
) -> bool:
    """The official ``compare_multi_pandas_table``: the prediction matches any gold variant.

    ``condition_cols`` is one list for every variant, or a list of lists (one per variant).
    """
    golds = list(golds)
    cc = condition_cols
    if cc is None or list(cc) in ([], [[]], [None]):
        per = [[] for _ in golds]
    elif len(golds) > 1 and all(isinstance(c, list) for c in cc):
        per = [list(c or []) for c in cc]
    elif all(isinstance(c, list) for c in cc):
        per = [list(cc[0] or [])] * len(golds)
    else:
        per = [list(cc)] * len(golds)
    if len(per) < len(golds):
        per += [[]] * (len(golds) - len(per))
    return any(
        spider2_table_match(pred, g, c, ignore_order, tol=tol)
        for g, c in zip(golds, per, strict=False)
    )


def result_to_frame(res: Any) -> Any:
    """An :class:`~agentic_sql.executor.ExecResult` as the official script sees it: a DataFrame written
    to CSV and read back with pandas (so the types are what ``read_csv`` infers)."""
    import pandas as pd

    df = pd.DataFrame.from_records([tuple(r) for r in res.rows], columns=list(res.columns))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    buf.seek(0)
    try:
        return pd.read_csv(buf)
    except pd.errors.EmptyDataError:  # no columns at all
        return pd.DataFrame()


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def evaluate_spider2_sqlite(
    preds: Sequence[str | None],
    dataset: Any,
    executor: Any,
    gold_dir: str | os.PathLike,
    *,
    timeout_s: float = 60.0,
    num_workers: int = 2,
    details: bool = False,
) -> dict[str, Any]:
    """Spider 2.0-lite (local SQLite) accuracy against the official gold CSVs (``metric="spider2"``).

    Args:
        preds: one SQL per dataset row (``None`` = no answer, wrong).
        dataset: rows with ``instance_id`` and ``db_id`` (e.g. :func:`agentic_sql.data.load_spider2_sqlite`).
        executor: the sandbox over the Spider 2.0 local databases.
        gold_dir: ``spider2-lite/evaluation_suite/gold``.

    Returns:
        ``{"metric": "spider2", "ex", "n", "n_correct", "n_timeout", "n_error", "n_no_answer",
        "by_difficulty", "timeout_s"}`` (+ ``per_question``).

    Raises:
        ValueError: a row without ``instance_id``.
        MalformedDatasetError: an instance without an official gold CSV (it cannot be scored).
    """
    from agentic_sql.errors import MalformedDatasetError
    from agentic_sql.eval import _rows, _summarise

    rows = _rows(dataset) if _has_gold_col(dataset) else [dict(r) for r in dataset]
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(f"got {len(preds)} predictions for {len(rows)} questions")
    gold = load_spider2_gold(gold_dir)
    for i, r in enumerate(rows):
        if not r.get("instance_id"):
            raise ValueError(f"row {i} lacks instance_id; Spider 2.0 is scored per instance")
        if str(r["instance_id"]) not in gold:
            raise MalformedDatasetError(
                f"instance {r['instance_id']!r} (row {i}) has no official gold result in {gold_dir} "
                f"(expected exec_result/{r['instance_id']}.csv and an entry in spider2lite_eval.jsonl)"
            )
    todo = [i for i, p in enumerate(preds) if isinstance(p, str) and p.strip()]
    executed = executor.execute_many(
        [(rows[i]["db_id"], preds[i]) for i in todo],
        timeout_s=timeout_s,
        max_rows=None,
        max_workers=num_workers,
    )
    res_by = dict(zip(todo, executed, strict=True))
    records = []
    for i, r in enumerate(rows):
        g = gold[str(r["instance_id"])]
        res = res_by.get(i)
        correct, error = False, None
        if res is not None and res.ok:
            try:
                correct = spider2_match(
                    result_to_frame(res), g.frames(), g.condition_cols, g.ignore_order
                )
            except (IndexError, KeyError, ValueError, TypeError) as e:  # the script scores 0
                error = f"comparison error: {type(e).__name__}: {e}"
        elif res is not None:
            error = res.error
        records.append(
            {
                "idx": i,
                "instance_id": str(r["instance_id"]),
                "db_id": r["db_id"],
                "difficulty": str(r.get("difficulty") or "unknown"),
                "pred_sql": preds[i],
                "correct": int(correct),
                "no_answer": res is None,
                "timed_out": bool(res is not None and res.timed_out),
                "error": error,
                "gold_error": None,
                "gold_files": [p.name for p in g.csv_paths],
            }
        )
    metrics = {"metric": "spider2", **_summarise(records)}
    metrics["timeout_s"] = float(timeout_s)
    if details:
        metrics["per_question"] = records
    return metrics


def read_spider2_predictions(
    path: str | os.PathLike, instance_ids: Sequence[str]
) -> list[str | None]:
    """Predictions aligned with ``instance_ids``: the official submission folder (one
    ``<instance_id>.sql`` per answered instance; a missing file = no answer), or a JSON list of SQL
    (one per instance, in order) / object ``{instance_id: SQL}``.

    Raises:
        FileNotFoundError: no such file or folder. MalformedDatasetError: a JSON file of another
        shape, or a list of the wrong length.
    """
    from agentic_sql.errors import MalformedDatasetError

    p = Path(path)
    if p.is_dir():
        out: list[str | None] = []
        for iid in instance_ids:
            f = p / f"{iid}.sql"
            out.append(f.read_text(encoding="utf-8") if f.is_file() else None)
        n = sum(x is not None for x in out)
        logger.info("%s: %d of %d instances answered", p, n, len(out))
        return out
    if not p.is_file():
        raise FileNotFoundError(
            f"predictions not found: {p} (a folder of <instance_id>.sql or JSON)"
        )
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MalformedDatasetError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if isinstance(obj, dict):
        return [obj.get(i) if isinstance(obj.get(i), str) else None for i in instance_ids]
    if isinstance(obj, list) and all(x is None or isinstance(x, str) for x in obj):
        if len(obj) != len(instance_ids):
            raise MalformedDatasetError(
                f"{p} has {len(obj)} predictions but there are {len(instance_ids)} instances"
            )
        return list(obj)
    raise MalformedDatasetError(
        f"{p}: expected a JSON list of SQL strings or an object {{instance_id: SQL}}, "
        f"got a JSON {type(obj).__name__}"
    )


def _has_gold_col(dataset: Any) -> bool:
    try:
        first = dataset[0]
    except (IndexError, KeyError, TypeError):
        return False
    return isinstance(first, dict) and any(k in first for k in ("gold_sql", "SQL", "query"))
