"""Comparing execution results: BIRD execution accuracy and the column-set matching score (spec §2.2).

* :func:`ex_match` — the official BIRD rule ``set(pred_rows) == set(gold_rows)``: row order and
  duplicates are ignored, column order inside a row matters, column names are ignored. With
  ``order_sensitive=True`` rows are compared as lists. (Spider's official metric — bags, column
  permutations, ``order by`` anywhere in gold, database variants — is
  :func:`agentic_sql.spider_eval.spider_result_eq`, ``metric="spider_ex"``.)
* :func:`column_set_score` — CSMR: a dense score in [0, 1] from how many result *columns* match,
  via a one-to-one assignment of predicted columns to gold columns.

Hacking surface of column-*set* matching (``mode="exact"`` / ``"jaccard"``): each column is compared
as a set of values on its own, so which values sit *together in a row* is never checked. A cross
join of two correct columns (25 wrong pairs for 5 gold rows), or columns sorted independently,
scores like the exact answer with its columns swapped (0.9 with the default cap). ``mode="rows"``
closes that gap: after the column assignment, the predicted rows are projected onto the matched
columns (in gold order) and compared with the gold rows as *multisets*; the column F1 is multiplied
by the row F1, so misaligned rows lose credit while a column permutation keeps it. Also note that a
single-column answer is 0/1 in ``mode="exact"``: its one column matches (then the answer is an EX
match, 1.0) or not (0.0); ``"jaccard"`` and ``"rows"`` give partial credit there.

A result cut at the executor's ``max_rows`` (``ExecResult.truncated``) holds only part of the rows,
so it is *not comparable*: it never matches (EX is False, CSMR is 0). Evaluation fetches every row
(``max_rows=None``) and the rewards execute gold uncapped and re-execute a truncated prediction
uncapped (:func:`agentic_sql.rewards.score_query`), so this only bites callers that compare capped
results themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from agentic_sql.executor import ExecResult

__all__ = ["column_set_score", "column_values", "ex_match", "max_weight_assignment"]


class _NaN:
    """Hashable stand-in for NaN so that NaN == NaN when comparing results by value."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NaN)

    def __hash__(self) -> int:
        return hash("agentic_sql.NaN")

    def __repr__(self) -> str:
        return "nan"


_NAN = _NaN()


def _norm(v: Any, float_round: int | None) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return _NAN
        if float_round is not None and math.isfinite(v):
            return round(v, float_round)
    return v


def _rows(res: ExecResult, float_round: int | None) -> list[tuple]:
    return [tuple(_norm(v, float_round) for v in row) for row in res.rows]


def ex_match(
    pred: ExecResult | None,
    gold: ExecResult | None,
    *,
    order_sensitive: bool = False,
    float_round: int | None = None,
) -> bool:
    """BIRD execution match: ``set(rows_pred) == set(rows_gold)`` (both must have executed).

    Args:
        order_sensitive: compare the row lists in order instead of sets (an approximation of
            Spider's rule; see :mod:`agentic_sql.spider_eval` for the official one).
        float_round: round floats to this many decimals first (``None`` = exact, as BIRD does).

    A failed or timed-out query never matches, nor does a truncated result (``truncated=True``:
    only the first ``max_rows`` rows are known, so the sets cannot be compared). Values compare as
    Python values (``1 == 1.0``, as in the official script); NaN equals NaN.
    """
    if pred is None or gold is None or not pred.ok or not gold.ok:
        return False
    if pred.truncated or gold.truncated:
        return False
    p, g = _rows(pred, float_round), _rows(gold, float_round)
    if order_sensitive:
        return p == g
    return set(p) == set(g)


def column_values(res: ExecResult, j: int, float_round: int | None = None) -> set:
    """The set of values in column ``j`` of a result (``C_j`` of spec §2.2, as a set)."""
    return {_norm(row[j], float_round) for row in res.rows if j < len(row)}


def column_set_score(
    pred: ExecResult | None,
    gold: ExecResult | None,
    *,
    mode: Literal["exact", "jaccard", "rows"] = "exact",
    cap_partial: float = 0.9,
    err_score: float = 0.0,
    float_round: int | None = None,
) -> float:
    """CSMR (spec §2.2): F1 of a max-weight one-to-one matching of predicted to gold columns.

    ``sim[i][j]`` is 1 when ``set(C_i(P)) == set(C_j(G))`` (``mode="exact"``) or the Jaccard index
    of the two value sets (``mode="jaccard"``); ``matched`` = total similarity of the best assignment;
    ``prec = matched / m`` (m predicted columns), ``rec = matched / n`` (n gold columns);
    the score is ``1.0`` iff :func:`ex_match`, else ``min(F1, cap_partial)`` so a partial answer
    always scores below an exact one.

    ``mode="rows"`` (row-aware): columns are assigned by Jaccard similarity, then the rows of both
    results, projected onto the assigned column pairs (pred columns reordered to gold order), are
    compared as multisets; ``score = min(F1_columns * F1_rows, cap_partial)``. A column permutation
    keeps full credit (0.9), a misaligned cross join does not (see the module docstring). With
    ``mode="exact"`` a single-column answer scores only 0 or 1. An error (or ``None``) scores ``err_score``; an empty
    prediction for a non-empty gold, or a truncated result on either side (not comparable), scores 0.
    """
    if mode not in ("exact", "jaccard", "rows"):
        raise ValueError(f"mode must be 'exact', 'jaccard' or 'rows', got {mode!r}")
    if not 0.0 <= cap_partial <= 1.0:
        raise ValueError(f"cap_partial must be in [0, 1], got {cap_partial!r}")
    if pred is None or not pred.ok:
        return float(err_score)
    if gold is None or not gold.ok:
        return float(err_score)
    if pred.truncated or gold.truncated:
        return 0.0
    if ex_match(pred, gold, float_round=float_round):
        return 1.0
    if not pred.rows and gold.rows:
        return 0.0
    m = _width(pred)
    n = _width(gold)
    if m == 0 or n == 0:
        return 0.0
    pcols = [column_values(pred, i, float_round) for i in range(m)]
    gcols = [column_values(gold, j, float_round) for j in range(n)]
    sim_mode = "jaccard" if mode == "rows" else mode
    sim = [[_sim(a, b, sim_mode) for b in gcols] for a in pcols]
    pairs = max_weight_assignment(sim)
    matched = sum(sim[i][j] for i, j in pairs)
    f1 = _f1(matched / m, matched / n)
    if mode == "rows":
        f1 *= _row_f1(pred, gold, [(i, j) for i, j in pairs if sim[i][j] > 0], float_round)
    return float(min(f1, cap_partial))


def _f1(prec: float, rec: float) -> float:
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def _row_f1(
    pred: ExecResult, gold: ExecResult, pairs: list[tuple[int, int]], float_round: int | None
) -> float:
    """F1 of the multisets of rows projected onto the assigned ``(pred col, gold col)`` pairs."""
    if not pairs:
        return 0.0
    pairs = sorted(pairs, key=lambda ij: ij[1])  # gold column order
    p = Counter(tuple(_norm(r[i], float_round) for i, _ in pairs) for r in pred.rows)
    g = Counter(tuple(_norm(r[j], float_round) for _, j in pairs) for r in gold.rows)
    common = sum((p & g).values())
    n_p, n_g = sum(p.values()), sum(g.values())
    if n_p == 0 or n_g == 0:
        return 0.0
    return _f1(common / n_p, common / n_g)


def _width(res: ExecResult) -> int:
    if res.columns:
        return len(res.columns)
    return len(res.rows[0]) if res.rows else 0


def _sim(a: set, b: set, mode: str) -> float:
    if mode == "exact":
        return 1.0 if a == b else 0.0
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def max_weight_assignment(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Row/column pairs of a maximum-weight one-to-one assignment of a rectangular matrix.

    Uses ``scipy.optimize.linear_sum_assignment`` when scipy is installed, else a built-in
    Hungarian algorithm (O(n^2 m); result columns are few).
    """
    r = len(weights)
    c = len(weights[0]) if r else 0
    if r == 0 or c == 0:
        return []
    try:
        import numpy as np
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _hungarian_max(weights)
    rows, cols = linear_sum_assignment(np.asarray(weights, dtype=float), maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]


def _hungarian_max(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Maximum-weight assignment via the Hungarian algorithm on costs ``-w`` (rows <= cols case)."""
    r, c = len(weights), len(weights[0])
    transposed = r > c
    w = (
        [list(col) for col in zip(*weights, strict=True)]
        if transposed
        else [list(x) for x in weights]
    )
    n, m = len(w), len(w[0])
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)  # p[j] = row (1-based) assigned to column j
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta, j1 = inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = -w[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(j, i) for i, j in pairs]
    return sorted(pairs)
