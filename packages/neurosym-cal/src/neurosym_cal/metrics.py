"""Calibration and selective-generation metrics (spec §2.4, §5), numpy in, floats out.

* :func:`expected_calibration_error` — equal-width bins ``[b/B, (b+1)/B)``, the **last bin closed at
  1.0**, ``ECE = Σ_b (n_b / N) · |acc_b − conf_b|``. This equals netcal's ``ECE(bins=B)``
  (checked in the tests when netcal is installed). torchmetrics 1.9's
  ``BinaryCalibrationError`` differs when a confidence is exactly 1.0 — the saturated case this
  package is about (10 wrong at 1.0 + 10 right at 0.95: 0.5250 here and in netcal, 0.4750 in
  torchmetrics; see API-NOTES and ``tests/test_metrics.py``).
* :func:`equal_mass_ece` — bins holding (nearly) equal numbers of samples (sorted by confidence).
* :func:`brier_score`, :func:`auroc` (scikit-learn ``roc_auc_score``; one class → error).
* Selective generation: :func:`risk_coverage_curve` (answer the most confident first: coverage
  ``i/N``, risk = error rate among the ``i`` answered), :func:`aurc` (mean selective risk over
  coverages ``1/N … 1``, ties in confidence averaged so the order of tied items does not matter),
  :func:`risk_at_coverage`, :func:`coverage_at_risk`.

Every function validates its inputs: confidences in [0, 1] and finite, labels 0/1 (bool or int),
equal lengths, at least one sample → :class:`~neurosym_cal.errors.InvalidProbabilityError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurosym_cal.errors import InvalidProbabilityError, SingleClassError

ArrayLike = Sequence[float] | np.ndarray


def _check(confidences: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        p = np.asarray(confidences, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise InvalidProbabilityError(f"confidences must be numbers, got {e}") from None
    try:
        y_raw = np.asarray(correct).reshape(-1)
    except (TypeError, ValueError) as e:  # pragma: no cover
        raise InvalidProbabilityError(f"labels must be 0/1, got {e}") from None
    if p.size == 0:
        raise InvalidProbabilityError("confidences are empty: need at least one sample")
    if p.shape != y_raw.shape:
        raise InvalidProbabilityError(
            f"confidences and labels differ in length: {p.size} vs {y_raw.size}"
        )
    if not np.all(np.isfinite(p)):
        bad = int(np.flatnonzero(~np.isfinite(p))[0])
        raise InvalidProbabilityError(f"confidence {bad} is {p[bad]}: expected a number in [0, 1]")
    if p.min() < 0 or p.max() > 1:
        bad = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise InvalidProbabilityError(f"confidence {bad} is {p[bad]!r}: expected a value in [0, 1]")
    try:
        y = y_raw.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidProbabilityError(
            f"labels must be 0/1 or bool, got dtype {y_raw.dtype}"
        ) from None
    if not np.all((y == 0) | (y == 1)):
        bad = int(np.flatnonzero(~((y == 0) | (y == 1)))[0])
        raise InvalidProbabilityError(f"label {bad} is {y_raw[bad]!r}: expected 0/1 or a bool")
    return p, y


def _check_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def bin_indices(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: ``[e_b, e_{b+1})`` with ``e = linspace(0, 1, B + 1)``
    (as ``np.histogram``, so values on an edge go to the upper bin), ``p = 1.0`` in the last bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidences, side="right") - 1, 0, n_bins - 1)


def reliability_table(
    confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15
) -> dict[str, np.ndarray]:
    """Per equal-width bin: ``count``, mean ``confidence``, ``accuracy`` (NaN where empty), ``edges``."""
    _check_bins(n_bins)
    p, y = _check(confidences, correct)
    b = bin_indices(p, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(b, weights=p, minlength=n_bins)
    acc_sum = np.bincount(b, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(count > 0, acc_sum / count, np.nan)
    return {
        "count": count,
        "confidence": conf,
        "accuracy": acc,
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
    }


def expected_calibration_error(
    confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15
) -> float:
    """ECE with ``n_bins`` equal-width bins (last closed at 1.0), weighted by bin mass (see module doc)."""
    t = reliability_table(confidences, correct, n_bins)
    mask = t["count"] > 0
    n = t["count"].sum()
    gaps = np.abs(t["accuracy"][mask] - t["confidence"][mask])
    return float((t["count"][mask] / n * gaps).sum())


def equal_mass_ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """ECE with bins of (nearly) equal sample counts (``np.array_split`` of the sorted samples).

    Fewer samples than bins → one sample per bin.
    """
    _check_bins(n_bins)
    p, y = _check(confidences, correct)
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(n_bins, p.size)):
        if chunk.size:
            total += chunk.size * abs(y[chunk].mean() - p[chunk].mean())
    return float(total / p.size)


def brier_score(confidences: ArrayLike, correct: ArrayLike) -> float:
    """Mean squared error ``mean((p − y)²)``."""
    p, y = _check(confidences, correct)
    return float(np.mean((p - y) ** 2))


def auroc(confidences: ArrayLike, correct: ArrayLike) -> float:
    """Area under the ROC curve of confidence vs correctness (scikit-learn ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score

    p, y = _check(confidences, correct)
    if y.min() == y.max():
        raise SingleClassError(
            f"AUROC needs both correct and wrong examples; all {y.size} labels are {int(y[0])}"
        )
    return float(roc_auc_score(y, p))


def risk_coverage_curve(
    confidences: ArrayLike, correct: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, risk)`` arrays of length N: answer the ``i`` most confident, ``i = 1..N``.

    Tied confidences are answered together: every coverage inside a tie gets the tie's *expected*
    risk under a random order (so the curve does not depend on how ties were sorted).
    """
    p, y = _check(confidences, correct)
    n = p.size
    order = np.argsort(-p, kind="stable")
    ps, err = p[order], 1.0 - y[order]
    cum_err = np.cumsum(err)
    # tie groups: expected errors within a group grow linearly
    expected = np.empty(n)
    start = 0
    while start < n:
        end = start
        while end + 1 < n and ps[end + 1] == ps[start]:
            end += 1
        before = cum_err[start - 1] if start > 0 else 0.0
        group_err = cum_err[end] - before
        size = end - start + 1
        for j in range(size):
            expected[start + j] = before + group_err * (j + 1) / size
        start = end + 1
    coverage = np.arange(1, n + 1) / n
    risk = expected / np.arange(1, n + 1)
    return coverage, risk


def aurc(confidences: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk–coverage curve: the mean selective risk over coverages ``1/N … 1``."""
    _, risk = risk_coverage_curve(confidences, correct)
    return float(risk.mean())


def risk_at_coverage(confidences: ArrayLike, correct: ArrayLike, coverage: float) -> float:
    """Selective risk when answering the ``ceil(coverage · N)`` most confident (coverage in (0, 1])."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
    cov, risk = risk_coverage_curve(confidences, correct)
    i = int(np.ceil(coverage * cov.size - 1e-12)) - 1
    return float(risk[max(i, 0)])


def coverage_at_risk(confidences: ArrayLike, correct: ArrayLike, max_risk: float) -> float:
    """Largest coverage whose selective risk is ≤ ``max_risk`` (0.0 when none is)."""
    if not 0 <= max_risk <= 1:
        raise ValueError(f"max_risk must be in [0, 1], got {max_risk!r}")
    cov, risk = risk_coverage_curve(confidences, correct)
    ok = np.flatnonzero(risk <= max_risk + 1e-12)
    return float(cov[ok[-1]]) if ok.size else 0.0


def summary(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> dict[str, float]:
    """All metrics at once (AUROC is NaN when the labels have one class)."""
    p, y = _check(confidences, correct)
    try:
        roc = auroc(p, y)
    except SingleClassError:
        roc = float("nan")
    return {
        "ece": expected_calibration_error(p, y, n_bins),
        "equal_mass_ece": equal_mass_ece(p, y, n_bins),
        "brier": brier_score(p, y),
        "auroc": roc,
        "aurc": aurc(p, y),
        "risk@0.5": risk_at_coverage(p, y, 0.5),
        "risk@0.8": risk_at_coverage(p, y, 0.8),
        "coverage@risk0.1": coverage_at_risk(p, y, 0.1),
        "accuracy": float(y.mean()),
        "mean_confidence": float(p.mean()),
        "n": float(p.size),
    }


__all__ = [
    "aurc",
    "auroc",
    "bin_indices",
    "brier_score",
    "coverage_at_risk",
    "equal_mass_ece",
    "expected_calibration_error",
    "reliability_table",
    "risk_at_coverage",
    "risk_coverage_curve",
    "summary",
]
