"""bench/miniature.py: statistics, verdicts and a resumable end-to-end run on the committed model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
RUN = BENCH / "runs" / "recall10"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"structkv_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


mini = _load("miniature")


def test_bootstrap_interval_contains_the_mean_and_paired_stats_of_a_copy_are_exact():
    ctx = [[1, 0, 1, 1]] * 30 + [[0, 0, 0, 1]] * 30
    lo, hi = mini.bootstrap(ctx)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert mini.bootstrap(ctx, ctx, "ratio") == (1.0, 1.0)
    assert mini.bootstrap(ctx, ctx, "diff") == (0.0, 0.0)


def _rec(hits: list[str], cost=1.0, kv=0.1, pivots=None) -> dict:
    return {
        "hits": hits,
        "prefill_cost": cost,
        "kv_fraction": kv,
        "pivots": pivots or {"None": len(hits)},
        "calls": len(hits),
        "oracle_coverage": None,
    }


def _data(structkv_hits: list[str], structkv_cost: float) -> dict:
    n = 60
    res = {}
    for name, hits, cost in [
        ("full", ["11"] * n, 1.0),
        ("oracle", ["11"] * n, 1.0),
        ("random", ["00"] * n, 1.0),
        ("snapkv", ["10"] * n, 1.0),
        ("fastkv", ["10"] * n, 0.6),
        ("structkv", structkv_hits, structkv_cost),
    ]:
        res[mini.key("kv", "agnostic", 0.1, 0, name)] = _rec(hits, cost, pivots={"3": n})
    meta = {
        "machine": "m", "model": "x", "data": "d", "n": n, "seeds": [0], "tasks": ["kv"],
        "protocols": ["agnostic"], "budgets": [0.1], "window_size": 8, "prefill_budget": 0.6,
    }  # fmt: skip
    return {"meta": meta, "results": res}


def test_report_prints_the_table_and_a_verdict_per_claim():
    text = mini.report(_data(["11"] * 60, 0.6))
    assert (
        "| **StructKV** | 1.000 [1.000, 1.000] | 1.00 [1.00, 1.00] | 0.60 | 0.100 | 3:100% |"
        in text
    )
    assert "feasibility: oracle reaches 1.00× full (feasible)" in text
    assert "StructKV ≥ 0.95× full at 10% KV and 0.6 prefill cost: **held**" in text
    assert "StructKV > FastKV: **held** (Δ = +0.500" in text
    assert "StructKV > SnapKV: **held**" in text


def test_a_claim_fails_on_accuracy_or_on_a_busted_compute_budget():
    worse = mini.report(_data(["10"] * 60, 0.6))
    assert "0.6 prefill cost: **did not hold** (0.50×" in worse
    assert "StructKV > FastKV: **did not hold** (Δ = +0.000" in worse
    over = mini.report(_data(["11"] * 60, 0.66))
    assert "0.6 prefill cost: **did not hold** (1.00×" in over


def test_a_block_whose_full_cache_fails_the_gate_gets_no_verdict():
    data = _data(["11"] * 60, 0.6)
    data["results"][mini.key("kv", "agnostic", 0.1, 0, "full")]["hits"] = ["10"] * 60
    text = mini.report(data)
    assert "INVALID: full-cache accuracy 0.500 < 0.9" in text and "**held**" not in text


def test_ablation_kwargs_follow_the_installed_press():
    from dataclasses import fields

    from structkv.presses import StructKVPress

    abl = mini.ablation_kwargs(0.1)
    names = {f.name for f in fields(StructKVPress)}
    for kw in abl.values():
        assert set(kw) <= names
        StructKVPress(compression_ratio=0.9, prefill_budget=0.6, **kw)  # constructible as used


@pytest.mark.skipif(not (RUN / "model").exists(), reason="bench checkpoint not in this checkout")
def test_end_to_end_run_writes_cells_and_resumes_without_recomputing(tmp_path, capsys):
    out = tmp_path / "mini.json"
    argv = [
        "--run-kv", str(RUN), "--run-twohop", str(RUN), "--tasks", "kv,twohop", "--n", "3", "--seeds", "0",
        "--methods", "full,oracle,random,structkv", "--batch", "3", "--out", str(out),
    ]  # fmt: skip
    data = mini.main(argv)
    res = data["results"]
    assert len(res) == 2 * 2 * 4  # tasks × protocols × methods
    full = res[mini.key("kv", "agnostic", 0.1, 0, "full")]
    oracle = res[mini.key("kv", "agnostic", 0.1, 0, "oracle")]
    sk = res[mini.key("kv", "aware", 0.1, 0, "structkv")]
    assert len(full["hits"]) == 3 and all(len(h) == 4 for h in full["hits"])  # 4 questions each
    assert all(len(h) == 1 for h in sk["hits"])  # aware: one question per context
    assert (
        oracle["kv_fraction"] == pytest.approx(0.1, abs=0.005) and oracle["oracle_coverage"] == 1.0
    )
    assert (
        sk["calls"] == 3 and sum(sk["pivots"].values()) == 3
    )  # one call per context (per-input pivot)
    two = res[mini.key("twohop", "agnostic", 0.1, 0, "full")]
    assert all(len(h) == 2 for h in two["hits"])  # 2 chains → 2 questions
    saved = json.loads(out.read_text())["results"]
    assert saved.keys() == res.keys()
    capsys.readouterr()
    again = mini.main(argv)
    assert again["results"] == saved  # nothing recomputed
    assert "Verdicts" in capsys.readouterr().out
