"""The demo end to end (slow: trains two tiny BERTs)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_demo_runs_and_reports_both_methods():
    from kls.demo import run_demo

    res = run_demo()
    assert res.baseline == "hard-label fine-tuning"
    assert 0.0 <= res.value <= 1.0 and 0.0 <= res.baseline_value <= 1.0
    assert set(res.details) >= {"ce", "kls"}
