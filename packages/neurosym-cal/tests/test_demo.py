"""The papercore demo: runs the real calibrators on simulated features and says so."""

from __future__ import annotations

import numpy as np

from neurosym_cal.demo import run_demo, simulate_table
from papercore.demo import DemoResult


def test_simulated_table_has_saturated_errors():
    t = simulate_table(400, systematic_rate=0.3, random_rate=0.1, seed=0)
    kind = np.array([int(g) for g in t.groups])
    sc = t.column("sc_top")
    assert sc[kind == 2].mean() > 0.85 and sc[kind == 1].mean() < 0.6
    assert t.labels.tolist() == (kind == 0).astype(float).tolist()


def test_run_demo(one_torch_thread):
    res = run_demo()
    assert isinstance(res, DemoResult) and not res.higher_is_better
    assert res.details["simulated"] is True and "simulated" in res.metric
    assert res.details["sandbox_passed"] == 1.0 and res.details["rsa_features"] == 12
    # with an intrinsic signal planted, the CCN calibrates the OOD split better than SC + isotonic
    assert 0 <= res.value < res.baseline_value
