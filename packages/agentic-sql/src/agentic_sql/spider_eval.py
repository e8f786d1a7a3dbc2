"""Spider's official execution metric: the test-suite ``result_eq`` (``metric="spider_ex"``).

Re-implements the semantics of ``exec_eval.py`` in taoyds/test-suite-sql-eval (Zhong et al., 2020,
"Semantic Evaluation for Text-to-SQL with Distilled Test Suites"), the script behind Spider's
execution accuracy, on top of the sandbox:

* both queries are post-processed as the script does: ``> =`` / ``< =`` / ``! =`` joined,
  ``YEAR(CURDATE())`` replaced by ``2020``, and — unless ``keep_distinct=True`` (the script's
  ``--keep_distinct`` flag, off by default) — every ``DISTINCT`` keyword removed from *both* queries;
* rows are compared as **bags** (duplicates count), **in order** when the text ``order by`` occurs
  anywhere in the (post-processed, lower-cased) gold query — a subquery's ORDER BY counts too;
* **column order is free**: the prediction matches if some permutation of its columns makes the
  two results equal (column names never matter); the numbers of rows and columns must agree, and
  two empty results are equal whatever their columns;
* **every database variant** in the database's folder (each ``*.sqlite`` file next to
  ``<db_id>.sqlite``; the test suite ships several per database) must give a match; a gold query
  that fails on any of them is an error of the benchmark (the script asserts): it raises
  :class:`~agentic_sql.errors.GoldQueryError`, never a wrong answer;
* values compare as Python values (``1 == 1.0``; ``'1' != 1``), as the script's tuples do.

Not reproduced: the script's ``--plug_value`` mode (gold values substituted into the prediction)
and its text decoding (``errors="ignore"``; the sandbox keeps undecodable bytes as ``\\xNN``
escapes, on both sides alike). The script samples rows at random to prune column permutations
for results wider than 3 columns; the pruning is sound, so its answer does not depend on the
sample, and here every row is used (deterministic).

:func:`agentic_sql.eval.evaluate_ex` with ``order_sensitive="auto"`` is only an *approximation*
of this (set semantics, outermost ORDER BY only, fixed column order, one database).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "SPIDER_TIMEOUT_S",
    "SpiderMatch",
    "evaluate_spider_ex",
    "order_matters",
    "postprocess",
    "remove_distinct",
    "spider_exec_match",
    "spider_result_eq",
]

#: the official script's per-query timeout (``TIMEOUT = 60`` in exec_eval.py)
SPIDER_TIMEOUT_S = 60.0

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# Query post-processing
# ----------------------------------------------------------------------------------------------


def postprocess(sql: str) -> str:
    """Join the comparison operators a tokenizer split (``> =`` -> ``>=``, ``< =``, ``! =``)."""
    return sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def replace_cur_year(sql: str) -> str:
    """``YEAR(CURDATE())`` (MySQL, not SQLite) -> ``2020``, as the official script does."""
    return _CUR_YEAR.sub("2020", sql)


def remove_distinct(sql: str) -> str:
    """``sql`` without its ``DISTINCT`` keywords (the official default; string literals and quoted
    identifiers untouched; the surrounding whitespace stays, as the script's token join leaves it)."""
    try:
        from sqlglot.tokens import Tokenizer, TokenType

        tokens = Tokenizer().tokenize(sql)
    except Exception:  # sqlglot cannot tokenize: fall back to a word match
        return re.sub(r"(?i)(?<![\w'\"`])distinct(?![\w'\"`])", "", sql)
    spans = [(t.start, t.end + 1) for t in tokens if t.token_type == TokenType.DISTINCT]
    if not spans:
        return sql
    out, pos = [], 0
    for a, b in spans:
        out.append(sql[pos:a])
        pos = b
    out.append(sql[pos:])
    return "".join(out)


def order_matters(gold_sql: str, *, keep_distinct: bool = False) -> bool:
    """The official rule: rows compare in order iff ``'order by'`` occurs in the processed gold text."""
    g = postprocess(gold_sql)
    if not keep_distinct:
        g = remove_distinct(g)
    return "order by" in g.lower()


def _prepare(sql: str, keep_distinct: bool) -> str:
    s = postprocess(sql)
    if not keep_distinct:
        s = remove_distinct(s)
    return replace_cur_year(s)


# ----------------------------------------------------------------------------------------------
# result_eq
# ----------------------------------------------------------------------------------------------


def _unorder_row(row: Sequence[Any]) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_reject(gold: list[tuple], pred: list[tuple], ordered: bool) -> bool:
    """True when the results certainly differ: each row's values sorted, compared as a list (ordered)
    or as a set — a necessary condition of equality, as in the official script."""
    g = [_unorder_row(r) for r in gold]
    p = [_unorder_row(r) for r in pred]
    return g != p if ordered else set(g) != set(p)


def _permutations(gold: list[tuple], pred: list[tuple], n: int):
    """Column maps ``perm`` (pred column ``perm[i]`` plays gold column ``i``) that can make the results
    equal: pred column ``j`` may play gold column ``i`` only if each of its values occurs in gold
    column ``i`` (sound pruning, every row checked)."""
    gold_sets = [{r[i] for r in gold} for i in range(n)]
    allowed = [[j for j in range(n) if all(r[j] in gold_sets[i] for r in pred)] for i in range(n)]
    perm: list[int] = []
    used: set[int] = set()

    def rec(i: int):
        if i == n:
            yield tuple(perm)
            return
        for j in allowed[i]:
            if j not in used:
                used.add(j)
                perm.append(j)
                yield from rec(i + 1)
                perm.pop()
                used.discard(j)

    yield from rec(0)


def spider_result_eq(
    gold: Sequence[Sequence[Any]], pred: Sequence[Sequence[Any]], order_matters: bool
) -> bool:
    """The test suite's ``result_eq``: equal up to a column permutation, rows as bags (or lists).

    Args:
        gold: the gold rows (the script's ``result1``).
        pred: the predicted rows.
        order_matters: compare rows in order (gold with ORDER BY, see :func:`order_matters`).
    """
    g = [tuple(r) for r in gold]
    p = [tuple(r) for r in pred]
    if not g and not p:
        return True
    if len(g) != len(p):
        return False
    n = len(g[0])
    if len(p[0]) != n:
        return False
    if _quick_reject(g, p, order_matters):
        return False
    g_bag = None if order_matters else Counter(g)
    for perm in _permutations(g, p, n):
        p_perm = p if n == 1 else [tuple(r[j] for j in perm) for r in p]
        if order_matters:
            if p_perm == g:
                return True
        elif set(p_perm) == set(g) and Counter(p_perm) == g_bag:
            return True
    return False


# ----------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpiderMatch:
    """One question under ``spider_ex``: correct on every variant, how many variants were used, and
    why it failed (``error`` of the prediction on the first failing variant, if it errored)."""

    correct: bool
    n_dbs: int
    error: str | None = None
    timed_out: bool = False
    failed_db: str | None = None


def _gold_error(db_id: str, path: Path, gold_sql: str, res: Any) -> Exception:
    from agentic_sql.errors import DatabaseNotFoundError, GoldQueryError, SandboxWorkerError
    from agentic_sql.rewards import GoldFailure

    if res.error_kind == "not_found":
        return DatabaseNotFoundError(db_id, path, detail=f"gold query: {res.error}")
    if res.error_kind == "crash":
        return SandboxWorkerError(
            f"the gold query of db {db_id!r} could not run on {path.name}: {res.error}; "
            f"no spider_ex was computed"
        )
    return GoldQueryError(
        [
            GoldFailure(
                db_id, gold_sql, f"{res.error} (on {path.name})", res.error_kind, res.timed_out
            )
        ],
        hint="the Spider test-suite metric needs every gold query to run on every database "
        "variant (the official script asserts it)",
    )


def _score_all(
    executor: Any,
    items: list[tuple[str, str | None, str]],
    *,
    keep_distinct: bool,
    all_variants: bool,
    timeout_s: float,
    num_workers: int | None,
) -> list[SpiderMatch | None]:
    """``items`` = ``(db_id, pred or None, gold)``; every query on every variant in one parallel batch."""
    variants: dict[str, list[Path]] = {}
    for db_id, _, _ in items:
        if db_id not in variants:
            variants[db_id] = (
                executor.db_variants(db_id) if all_variants else [executor.db_path(db_id)]
            )
    jobs: list[tuple[Path, str]] = []
    index: list[tuple[int, int, int]] = []  # (item, gold job, pred job or -1)
    gold_jobs: dict[tuple[Path, str], int] = {}
    pred_jobs: dict[tuple[Path, str], int] = {}
    for k, (db_id, pred, gold) in enumerate(items):
        g, p = (
            _prepare(gold, keep_distinct),
            (_prepare(pred, keep_distinct) if pred is not None else None),
        )
        for path in variants[db_id]:
            gi = gold_jobs.get((path, g))
            if gi is None:
                gi = gold_jobs[(path, g)] = len(jobs)
                jobs.append((path, g))
            pi = -1
            if p is not None:
                pi = pred_jobs.get((path, p), -1)
                if pi < 0:
                    pi = pred_jobs[(path, p)] = len(jobs)
                    jobs.append((path, p))
            index.append((k, gi, pi))
    results = executor.execute_many_files(
        jobs, timeout_s=timeout_s, max_rows=None, max_workers=num_workers
    )
    for (path, _sql), gi in gold_jobs.items():
        res = results[gi]
        if not res.ok:
            k = next(k for k, g_i, _ in index if g_i == gi)
            raise _gold_error(items[k][0], path, items[k][2], res)
    out: list[SpiderMatch | None] = [None] * len(items)
    verdict: dict[int, SpiderMatch] = {}
    counts = Counter(k for k, _, _ in index)
    for k, gi, pi in index:
        if k in verdict:
            continue
        if pi < 0:
            verdict[k] = SpiderMatch(False, counts[k], error="no answer")
            continue
        pr, gr = results[pi], results[gi]
        ordered = order_matters(items[k][2], keep_distinct=keep_distinct)
        if not pr.ok:
            verdict[k] = SpiderMatch(
                False, counts[k], error=pr.error, timed_out=pr.timed_out, failed_db=jobs[pi][0].name
            )
        elif not spider_result_eq(gr.rows, pr.rows, ordered):
            verdict[k] = SpiderMatch(False, counts[k], failed_db=jobs[pi][0].name)
    for k in range(len(items)):
        out[k] = verdict.get(k, SpiderMatch(True, counts[k]))
    return out


def spider_exec_match(
    executor: Any,
    db_id: str,
    pred_sql: str,
    gold_sql: str,
    *,
    keep_distinct: bool = False,
    all_variants: bool = True,
    timeout_s: float = SPIDER_TIMEOUT_S,
) -> SpiderMatch:
    """One prediction under the official Spider execution metric (see the module docstring).

    Args:
        executor: a :class:`~agentic_sql.executor.SQLiteExecutor` over the Spider ``database/``
            folder (or the test suite's, with its database variants).
        all_variants: compare on every ``*.sqlite`` of the database's folder (the test suite).

    Raises:
        GoldQueryError: the gold query fails on a database variant (a benchmark error).
        DatabaseNotFoundError / SandboxWorkerError: infrastructure failures.
    """
    return _score_all(
        executor,
        [(db_id, pred_sql, gold_sql)],
        keep_distinct=keep_distinct,
        all_variants=all_variants,
        timeout_s=timeout_s,
        num_workers=None,
    )[0]  # type: ignore[return-value]


def evaluate_spider_ex(
    preds: Sequence[str | None],
    dataset: Any,
    executor: Any,
    *,
    timeout_s: float = SPIDER_TIMEOUT_S,
    num_workers: int = 2,
    keep_distinct: bool = False,
    all_variants: bool = True,
    details: bool = False,
) -> dict[str, Any]:
    """Spider execution accuracy with the official test-suite semantics (``metric="spider_ex"``).

    Args:
        preds: one SQL per dataset row (``None`` or empty = no answer, wrong).
        dataset: rows with ``db_id`` and ``gold_sql`` (or Spider's ``query``), optional ``difficulty``.
        executor: the sandbox over the Spider databases.
        timeout_s: per-query timeout (the script's 60 s); a prediction that times out is wrong.
        keep_distinct: the script's ``--keep_distinct`` (off: DISTINCT removed from both queries).
        all_variants: use every database variant in each database folder (the test suite).

    Returns:
        ``{"metric": "spider_ex", "ex", "n", "n_correct", "n_timeout", "n_error", "n_no_answer",
        "n_gold_error": 0, "by_difficulty", "timeout_s", "n_db_files"}`` (+ ``per_question``).

    Raises:
        GoldQueryError: a gold query fails on one of its databases (the official script asserts).
        DatabaseNotFoundError / SandboxWorkerError: infrastructure failures.
    """
    from agentic_sql.eval import _rows, _summarise

    rows = _rows(dataset)
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(
            f"got {len(preds)} predictions for {len(rows)} questions; they must match one to one"
        )
    items = [
        (str(r["db_id"]), p if isinstance(p, str) and p.strip() else None, str(r["gold_sql"]))
        for r, p in zip(rows, preds, strict=True)
    ]
    matches = _score_all(
        executor,
        items,
        keep_distinct=keep_distinct,
        all_variants=all_variants,
        timeout_s=timeout_s,
        num_workers=num_workers,
    )
    records = []
    for i, (row, (db_id, p, g), m) in enumerate(zip(rows, items, matches, strict=True)):
        assert m is not None
        records.append(
            {
                "idx": i,
                "question_id": row.get("question_id", i),
                "db_id": db_id,
                "difficulty": str(row.get("difficulty") or "unknown"),
                "pred_sql": preds[i],
                "gold_sql": g,
                "correct": int(m.correct),
                "no_answer": p is None,
                "timed_out": m.timed_out,
                "error": None if p is None else m.error,
                "gold_error": None,
                "n_dbs": m.n_dbs,
                "failed_db": m.failed_db,
            }
        )
    metrics = _summarise(records)
    metrics = {"metric": "spider_ex", **metrics}
    metrics["timeout_s"] = float(timeout_s)
    metrics["n_db_files"] = sum(
        len(executor.db_variants(d)) if all_variants else 1 for d in {it[0] for it in items}
    )
    metrics["keep_distinct"] = bool(keep_distinct)
    if details:
        metrics["per_question"] = records
    return metrics
