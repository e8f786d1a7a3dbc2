"""Retrieval training groups ``(query, d⁺, d⁻_1 … d⁻_N)`` and their soft ``label`` vectors (shared by KLS and LE)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from kls.errors import InvalidGroupError

_NEG = re.compile(r"^neg(ative)?(_?\d+)?$")


def negative_columns(
    ds: Any, query_col: str, pos_col: str, neg_cols: Sequence[str] | None
) -> list[str]:
    """The negative columns of a group dataset (given, or every ``negative*``/``neg*`` column in order)."""
    for col in (query_col, pos_col):
        if col not in ds.column_names:
            raise InvalidGroupError(f"dataset has no column {col!r}; has {ds.column_names}")
    if neg_cols is None:
        neg_cols = [c for c in ds.column_names if _NEG.match(c)]
    missing = [c for c in neg_cols if c not in ds.column_names]
    if missing:
        raise InvalidGroupError(f"dataset has no column(s) {missing}; has {ds.column_names}")
    if not neg_cols:
        raise InvalidGroupError(
            f"no negative columns found in {ds.column_names}; name them negative_1..negative_N or pass neg_cols"
        )
    return list(neg_cols)


def read_groups(
    ds: Any, query_col: str, pos_col: str, neg_cols: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Queries and groups ``[d⁺, d⁻_1, …]`` of every row, validated (row index in every error)."""
    queries = list(ds[query_col])
    cols = [list(ds[pos_col])] + [list(ds[c]) for c in neg_cols]
    groups = [list(g) for g in zip(*cols, strict=True)]
    for i, g in enumerate(groups):
        check_group(g, i)
    return queries, groups


def check_group(group: Sequence[str], row: int | None = None) -> None:
    where = "" if row is None else f"row {row}: "
    if len(group) < 2:
        raise InvalidGroupError(
            f"{where}a group needs a positive and at least one negative, got {len(group)} texts"
        )
    if not isinstance(group[0], str) or not group[0].strip():
        raise InvalidGroupError(f"{where}the group has no positive (empty first document)")
    for j, d in enumerate(group[1:], start=1):
        if not isinstance(d, str) or not d.strip():
            got = "None" if d is None else repr(d) if isinstance(d, str) else type(d).__name__
            raise InvalidGroupError(
                f"{where}negative {j} is empty ({got}); every row needs the same number of "
                "non-empty negatives (drop the row, or the column for every row)"
            )
    if group[0] in group[1:]:
        raise InvalidGroupError(f"{where}the positive also appears among the negatives")


def group_label(q: np.ndarray, alpha: float, keep_gold_top: bool = False) -> np.ndarray:
    """``ỹ = (1 − α)·onehot(d⁺) + α·q`` over a group (index 0 = positive); optionally force argmax = d⁺."""
    y = alpha * np.asarray(q, dtype=np.float64)
    y[0] += 1.0 - alpha
    if keep_gold_top and len(y) > 1:
        top = y[1:].max()
        if (
            y[0] <= top
        ):  # move mass from the negatives to the positive until it is strictly the largest
            rest = y[1:].sum()
            # choose a scale s on negatives so that y0' = 1 - s·rest exceeds s·top
            s = 0.999 / (rest + top)
            y[1:] *= s
            y[0] = 1.0 - y[1:].sum()
    return y


__all__ = ["check_group", "group_label", "negative_columns", "read_groups"]
