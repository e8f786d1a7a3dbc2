"""The MiniLM bench keeps earlier runs and never discards a results file made with other settings."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "bench_minilm.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_minilm_state", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SETUP = {
    "model": "m",
    "lr": 2e-5,
    "epochs": 1.0,
    "threads": 1,
    "seeds": [0, 1, 2],
    "ablation_seeds": [0],
}


def test_other_threads_or_seed_lists_keep_the_runs(bench, tmp_path):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"setup": SETUP, "runs": {"TripletLoss": {"0": {"MRR@10": 0.5}}}}))
    state = bench._load_state(out, {**SETUP, "threads": 2, "seeds": [0], "ablation_seeds": [0, 1]})
    assert state["runs"] == {"TripletLoss": {"0": {"MRR@10": 0.5}}}
    assert state["setup"]["seeds"] == [0] and state["setup"]["threads"] == 1


def test_other_settings_stop_the_run_and_name_them(bench, tmp_path):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"setup": SETUP, "runs": {"TripletLoss": {"0": {"MRR@10": 0.5}}}}))
    with pytest.raises(SystemExit, match=r"other settings \(lr: lr 2e-05 there, 0.001 now\)"):
        bench._load_state(out, {**SETUP, "lr": 1e-3})
    assert json.loads(out.read_text())["runs"]  # the file is untouched
    assert bench._load_state(tmp_path / "new.json", SETUP) == {"setup": SETUP, "runs": {}}
