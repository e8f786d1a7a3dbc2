"""Validation helpers shared by the public entry points (boundary checks, never inside hot loops)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kls.errors import InvalidSoftLabelError, OutOfRangeError


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Raise :class:`OutOfRangeError` unless ``value`` is a finite number in the given interval."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OutOfRangeError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or math.isinf(v):
        raise OutOfRangeError(f"{name} must be finite, got {value!r}")
    lo_bad = low is not None and (v <= low if low_open else v < low)
    hi_bad = high is not None and (v >= high if high_open else v > high)
    if lo_bad or hi_bad:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise OutOfRangeError(f"{name} must be in {lb}{lo}, {hi}{hb}, got {value!r}")
    return v


def validate_soft_labels(
    soft: Sequence[Sequence[float]] | np.ndarray,
    n_classes: int | None = None,
    *,
    atol: float = 1e-4,
    what: str = "soft label",
) -> np.ndarray:
    """Check a ``[n, C]`` soft-label matrix and return it as float64.

    Raises :class:`InvalidSoftLabelError` naming the first bad row when a row has the wrong length,
    contains NaN/inf or a negative entry, or does not sum to 1 (within ``atol``).
    """
    rows = list(soft) if not isinstance(soft, np.ndarray) else soft
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        arr = rows.astype(np.float64, copy=False)
        if n_classes is not None and arr.shape[1] != n_classes:
            raise InvalidSoftLabelError(
                f"{what} row 0 has length {arr.shape[1]}, expected {n_classes}"
            )
    else:
        width = n_classes if n_classes is not None else (len(rows[0]) if len(rows) else 0)
        for i, r in enumerate(rows):
            if len(r) != width:
                raise InvalidSoftLabelError(f"{what} row {i} has length {len(r)}, expected {width}")
        arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidSoftLabelError(f"{what} row {i} contains NaN or inf: {arr[i].tolist()}")
    neg = (arr < 0).any(axis=1)
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise InvalidSoftLabelError(f"{what} row {i} has a negative entry: {arr[i].tolist()}")
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InvalidSoftLabelError(f"{what} row {i} sums to {sums[i]:.6g}, expected 1")
    return arr
