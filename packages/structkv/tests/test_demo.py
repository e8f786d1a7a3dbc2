import pytest

from papercore.demo import DemoResult


def test_demo_reports_budgets_and_times():
    from structkv.demo import run_demo

    r = run_demo()
    assert isinstance(r, DemoResult) and not r.higher_is_better
    d = r.details
    assert d["full_prefill_cost"] == 1.0 and d["full_kv_fraction"] == 1.0
    for m in ("structkv", "fastkv"):
        assert d[f"{m}_prefill_cost"] == pytest.approx(0.6, abs=0.01)
        assert d[f"{m}_kv_fraction"] == pytest.approx(0.1, abs=0.01)
        assert 0 < d[f"{m}_pivot_layer"] < 8
    assert r.value == d["structkv_cpu_s"] > 0 and r.baseline_value == d["full_cpu_s"] > 0
