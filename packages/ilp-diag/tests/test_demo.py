import pytest


@pytest.mark.slow
def test_demo_runs_and_graded_beats_pass_at_n():
    from ilp_diag.demo import run_demo

    res = run_demo(seed=0)
    assert res.package == "ilp-diag"
    assert res.value > res.baseline_value
    assert res.details["controls_unlearned"] < res.value
