from __future__ import annotations

from epi.demo import run_demo


def test_demo_runs_and_compares_in_same_run():
    r = run_demo()
    assert r.method == "EPI" and r.baseline == "static isolation"
    assert set(r.details["results"]) == {"plain", "static", "epi"}
    assert 0.0 <= r.value <= 1.0 and r.floor is not None
    assert r.details["results"]["epi"]["final_new_acc"] > 0.9
