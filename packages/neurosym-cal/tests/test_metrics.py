"""Metrics against textbook loops, netcal (when installed) and the torchmetrics difference at p = 1.0."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from neurosym_cal.errors import InvalidProbabilityError, OutputExistsError, SingleClassError
from neurosym_cal.metrics import (
    aurc,
    auroc,
    brier_score,
    coverage_at_risk,
    equal_mass_ece,
    expected_calibration_error,
    risk_at_coverage,
    risk_coverage_curve,
    summary,
)
from neurosym_cal.plots import reliability_diagram, risk_coverage_plot


def textbook_ece(p, y, n_bins=15):
    """Guo et al.'s loop with bins [b/B, (b+1)/B) and the last bin closed at 1.0."""
    p, y = list(map(float, p)), list(map(float, y))
    edges = [b / n_bins for b in range(n_bins + 1)]
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        idx = [i for i, x in enumerate(p) if lo <= x < hi or (b == n_bins - 1 and x == 1.0)]
        if idx:
            acc = sum(y[i] for i in idx) / len(idx)
            conf = sum(p[i] for i in idx) / len(idx)
            total += len(idx) / len(p) * abs(acc - conf)
    return total


def torchmetrics_style_ece(p, y, n_bins=15):
    """torchmetrics 1.9's binning (``bucketize(p, linspace, right=True) - 1`` into n_bins + 1
    slots): p = 1.0 lands in an extra bin of its own instead of the last bin."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.searchsorted(edges, p, side="right") - 1
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(y[m].mean() - p[m].mean())
    return total


def _random_case(seed, n):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    p[:4] = 1.0
    p[4:7] = 0.0
    p[7:10] = [2 / 15, 7 / 15, 14 / 15]  # exactly on bin edges
    y = (rng.random(n) < p).astype(int)
    return p, y


@pytest.mark.parametrize("seed,n", [(0, 30), (1, 200), (2, 1000)])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_equals_textbook_loop(seed, n, n_bins):
    p, y = _random_case(seed, n)
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(
        textbook_ece(p, y, n_bins), abs=1e-12
    )


def test_saturated_case_and_the_torchmetrics_difference():
    """10 wrong at 1.0 + 10 right at 0.95: 1.0 and 0.95 share the last bin [14/15, 1.0], so the
    textbook (and netcal) ECE is |0.5 - 0.975| = 0.4750; torchmetrics 1.9 gives p = 1.0 a bin of
    its own: 0.5·|0 - 1| + 0.5·|1 - 0.95| = 0.5250. (API-NOTES lists the two numbers in the
    order "0.5250 vs 0.4750" = torchmetrics vs textbook.)"""
    p = np.r_[np.ones(10), np.full(10, 0.95)]
    y = np.r_[np.zeros(10), np.ones(10)]
    assert expected_calibration_error(p, y) == pytest.approx(0.4750)
    assert textbook_ece(p, y) == pytest.approx(0.4750)
    assert torchmetrics_style_ece(p, y) == pytest.approx(0.5250)
    if importlib.util.find_spec("torchmetrics") is not None:  # pragma: no cover - not in our lock
        import torch
        from torchmetrics.classification import BinaryCalibrationError

        tm = BinaryCalibrationError(n_bins=15, norm="l1")(torch.tensor(p), torch.tensor(y).long())
        assert float(tm) == pytest.approx(0.5250, abs=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(
    importlib.util.find_spec("netcal") is None, reason="netcal (extra `netcal`) not installed"
)
def test_ece_equals_netcal():
    from netcal.metrics import ECE

    for seed, n in [(0, 50), (1, 500)]:
        p, y = _random_case(seed, n)
        assert expected_calibration_error(p, y, 15) == pytest.approx(
            float(ECE(bins=15).measure(p, y)), abs=1e-9
        )
    p = np.r_[np.ones(10), np.full(10, 0.95)]
    y = np.r_[np.zeros(10), np.ones(10)]
    assert float(ECE(bins=15).measure(p, y)) == pytest.approx(0.4750)


def test_equal_mass_ece_brier_auroc():
    p = np.array([0.1, 0.2, 0.8, 0.9])
    y = np.array([0, 0, 1, 1])
    assert brier_score(p, y) == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert auroc(p, y) == 1.0
    assert auroc(1 - p, y) == 0.0
    # 2 bins of 2 samples: |0 - 0.15| and |1 - 0.85|
    assert equal_mass_ece(p, y, n_bins=2) == pytest.approx(0.15)
    with pytest.raises(SingleClassError, match="both"):
        auroc(p, np.ones(4))


def test_risk_coverage_hand_values():
    p = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([1, 0, 1, 0])
    cov, risk = risk_coverage_curve(p, y)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert aurc(p, y) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    assert risk_at_coverage(p, y, 0.5) == pytest.approx(0.5)
    assert risk_at_coverage(p, y, 0.26) == pytest.approx(0.5)
    assert coverage_at_risk(p, y, 0.1) == 0.25
    assert coverage_at_risk(p, y, 0.0) == 0.25
    # a perfect ranking has lower AURC than a reversed one
    assert aurc(p, [1, 1, 0, 0]) < aurc(p, [0, 0, 1, 1])


def test_ties_do_not_depend_on_order():
    p = np.array([0.5, 0.5, 0.5, 0.5])
    assert aurc(p, [1, 0, 1, 0]) == aurc(p, [0, 1, 0, 1]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "conf,correct,match",
    [
        ([0.5, 1.2], [0, 1], "in \\[0, 1\\]"),
        ([0.5, -0.1], [0, 1], "in \\[0, 1\\]"),
        ([0.5, float("nan")], [0, 1], "nan"),
        ([0.5, 0.6], [0, 1, 1], "length"),
        ([], [], "empty"),
        ([0.5, 0.6], [0, 2], "0/1"),
    ],
)
def test_invalid_inputs(conf, correct, match):
    for fn in (expected_calibration_error, brier_score, aurc, equal_mass_ece):
        with pytest.raises(InvalidProbabilityError, match=match):
            fn(conf, correct)


def test_bad_bins_and_coverage():
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="coverage"):
        risk_at_coverage([0.5], [1], 0.0)
    with pytest.raises(ValueError, match="max_risk"):
        coverage_at_risk([0.5], [1], 1.5)


def test_summary_keys():
    p, y = _random_case(0, 40)
    s = summary(p, y)
    assert s["ece"] == pytest.approx(expected_calibration_error(p, y))
    assert set(s) >= {"ece", "brier", "auroc", "aurc", "risk@0.5", "coverage@risk0.1"}
    assert np.isnan(summary([0.5, 0.6], [1, 1])["auroc"])


def test_plots_write_pngs(tmp_path):
    p, y = _random_case(0, 60)
    out = reliability_diagram(p, y, tmp_path / "rel.png", title="SC")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out2 = risk_coverage_plot({"sc": (p, y), "random": (np.full(60, 0.5), y)}, tmp_path / "rc.png")
    assert out2.stat().st_size > 1000
    with pytest.raises(OutputExistsError, match="overwrite"):
        reliability_diagram(p, y, out, overwrite=False)
    with pytest.raises(ValueError, match="png"):
        reliability_diagram(p, y, tmp_path / "rel.pdf")
    with pytest.raises(InvalidProbabilityError):
        reliability_diagram([2.0], [1], tmp_path / "bad.png")
