"""Reliability diagrams and risk–coverage plots as PNG files (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neurosym_cal.errors import OutputExistsError
from neurosym_cal.metrics import (
    _check,
    aurc,
    expected_calibration_error,
    reliability_table,
    risk_coverage_curve,
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _target(path: str | Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG: expected a path ending in .png, got {path}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def reliability_diagram(
    confidences: Any,
    correct: Any,
    path: str | Path,
    n_bins: int = 15,
    title: str = "Reliability diagram",
    overwrite: bool = True,
) -> Path:
    """Accuracy per equal-width confidence bin against the diagonal, with the bin counts below.

    The title carries the ECE (:func:`~neurosym_cal.metrics.expected_calibration_error`).
    Returns the written path.
    """
    p, y = _check(confidences, correct)
    path = _target(path, overwrite)
    t = reliability_table(p, y, n_bins)
    ece = expected_calibration_error(p, y, n_bins)
    plt = _pyplot()
    fig, (ax, axc) = plt.subplots(
        2, 1, figsize=(4.5, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = t["edges"]
    width = edges[1] - edges[0]
    mask = t["count"] > 0
    ax.bar(
        edges[:-1][mask],
        t["accuracy"][mask],
        width=width,
        align="edge",
        edgecolor="black",
        color="#4C72B0",
        label="accuracy",
    )
    gap_lo = np.minimum(t["accuracy"][mask], t["confidence"][mask])
    gap_hi = np.maximum(t["accuracy"][mask], t["confidence"][mask])
    ax.bar(
        edges[:-1][mask],
        gap_hi - gap_lo,
        bottom=gap_lo,
        width=width,
        align="edge",
        color="#DD8452",
        alpha=0.5,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE = {ece:.4f} (n = {p.size}, {n_bins} bins)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axc.bar(edges[:-1], t["count"], width=width, align="edge", color="gray", edgecolor="black")
    axc.set_xlim(0, 1)
    axc.set_xlabel("confidence")
    axc.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def risk_coverage_plot(
    methods: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    title: str = "Risk–coverage",
    overwrite: bool = True,
) -> Path:
    """One risk–coverage curve per method (``{name: (confidences, correct)}``), AURC in the legend."""
    if not methods:
        raise ValueError("risk_coverage_plot needs at least one method")
    path = _target(path, overwrite)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for name, (conf, correct) in methods.items():
        cov, risk = risk_coverage_curve(conf, correct)
        ax.plot(cov, risk, label=f"{name} (AURC {aurc(conf, correct):.3f})", lw=1.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage")
    ax.set_ylabel("selective risk")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["reliability_diagram", "risk_coverage_plot"]
