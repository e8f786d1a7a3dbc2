"""bench/ruler_smollm2.py: the shared-prefill fan-out, haystack construction and the SmolLM2 run (slow)."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch

from structkv import OraclePress, RandomPress, SnapKVPress, StructKVPress, generate, prefill
from structkv._compat import get_layer_kv

BENCH = Path(__file__).resolve().parents[1] / "bench"
spec = importlib.util.spec_from_file_location("structkv_bench_ruler", BENCH / "ruler_smollm2.py")
ruler = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = ruler
spec.loader.exec_module(ruler)


def _presses():
    return {
        "snap": SnapKVPress(0.8, window_size=8),
        "oracle": OraclePress(0.8, indices=[10, 50, 51], window_size=8),
        "random": RandomPress(0.8, seed=3, window_size=8),
    }


def test_fanout_prefill_equals_one_prefill_per_press(make_model, context_ids):
    model = make_model("llama", "sdpa", 4)
    shared = ruler.fanout_prefill(model, context_ids, _presses())
    q = torch.tensor([[5, 6, 7]])
    for name, press in _presses().items():
        alone = prefill(model, context_ids, press)
        for layer in range(4):
            for a, b in zip(
                get_layer_kv(alone.cache, layer),
                get_layer_kv(shared[name].cache, layer),
                strict=True,
            ):
                torch.testing.assert_close(a, b)
        assert shared[name].stats["kv_fraction"] == pytest.approx(alone.stats["kv_fraction"])
        assert torch.equal(generate(model, alone, q, 4), generate(model, shared[name], q, 4))
    full = prefill(model, context_ids)
    assert torch.equal(generate(model, full, q, 4), generate(model, shared["full"], q, 4))


def test_fanout_refuses_a_propagating_press(make_model, context_ids):
    with pytest.raises(ValueError, match="propagates"):
        ruler.fanout_prefill(make_model("llama", "sdpa", 4), context_ids, {"s": StructKVPress(0.9)})


@pytest.mark.parametrize("task, n_needles", [("single", 1), ("multikey", 4)])
def test_haystack_needle_positions_cover_exactly_the_needle_sentences(
    tiny_tokenizer, task, n_needles
):
    h = ruler.make_haystack(tiny_tokenizer, task, 600, random.Random(1))
    text = tiny_tokenizer.decode([h["ids"][i] for i in h["needles"]])
    assert text.count("special magic numbers for") == n_needles and h["answer"] in text
    assert "grass" not in text  # no noise token counted as a needle
    assert 400 < len(h["ids"]) < 800
    q = tiny_tokenizer.decode(h["question_ids"])
    assert q.rstrip().endswith("mentioned in the provided text is") and "assistant" in q
    again = ruler.make_haystack(tiny_tokenizer, task, 600, random.Random(1))
    assert again["ids"] == h["ids"]


def _row(i, task, hits: dict) -> dict:
    m = {k: {"hit": v, "text": "1234567." if v else "123.", "kv_fraction": 0.1,
             "prefill_cost": 0.6 if k[:2] in ("fa", "st") else 1.0,
             "pivot": 8 if k.startswith("structkv") else None, "seconds": 1.0} for k, v in hits.items()}  # fmt: skip
    return {"id": i, "task": task, "answer": "1234567", "methods": m}


def test_report_gives_a_verdict_per_claim_and_task():
    names = ["oracle", "random", "snapkv", "fastkv", "structkv"]
    rows = [
        _row(
            i,
            "single",
            {"full": 1, **{f"{n}@0.1": int(n in ("oracle", "structkv")) for n in names}},
        )
        for i in range(20)
    ]
    meta = {"machine": "m", "model": "x", "data": "d", "budgets": [0.1], "lengths": "2048",
            "window_size": 32, "prefill_budget": 0.6}  # fmt: skip
    text = ruler.report(meta, rows)
    assert "| single | **StructKV** | 1.00 [1.00, 1.00] · 1.00 · 0.00 · 0.60 · 8:20 |" in text
    # a miss that gives the first digits of the number counts as cut
    assert "| single | FastKV | 0.00 [0.00, 0.00] · 0.00 · 1.00 · 0.60 · – |" in text
    assert "[single/KV 10%] StructKV ≥ 0.95× full at 10% KV and 0.6 prefill cost: **held**" in text
    assert "[single/KV 10%] StructKV > FastKV: **held** (Δ = +1.00" in text


@pytest.mark.slow
def test_smollm2_bench_runs_one_haystack_and_resumes(tmp_path):
    from papercore.testing.smollm2 import smollm2_missing

    reason = smollm2_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "r.jsonl"
    argv = ["--n", "1", "--lengths", "1024", "--budgets", "0.2", "--out", str(out)]
    ruler.main(argv)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["methods"]["full"]["hit"] == 1  # the model finds a 1k needle
    assert rows[0]["methods"]["oracle@0.2"]["kv_fraction"] == pytest.approx(0.2, abs=0.01)
    assert rows[0]["methods"]["structkv@0.2"]["prefill_cost"] <= 0.62
    ruler.main(argv)  # resumes: nothing added
    assert len(out.read_text().splitlines()) == 1
    ruler.main([*argv, "--redo", "structkv"])  # re-runs StructKV only, on the same haystack
    again = json.loads(out.read_text())
    assert (
        again["redone"] == ["structkv"] and again["methods"]["full"] == rows[0]["methods"]["full"]
    )
