from __future__ import annotations

import pytest


@pytest.mark.slow
def test_demo_runs_and_reports_floor():
    from crps_synth.demo import run_demo

    res = run_demo()
    assert res.floor == 0.1 and res.kind in ("claim", "pipeline check")
    assert 0.0 <= res.value <= 1.0 and 0.0 <= res.baseline_value <= 1.0
