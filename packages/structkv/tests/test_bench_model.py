"""The committed bench model (bench/runs/recall10/model) still passes the gate through the bench's code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "bench" / "runs" / "recall10"


@pytest.mark.skipif(not (RUN / "model").exists(), reason="bench checkpoint not in this checkout")
def test_committed_recall_model_passes_the_gate_and_structkv_meets_its_budget():
    from transformers import LlamaForCausalLM

    from structkv.evaluate import evaluate_method
    from structkv.synthetic.tasks import RecallVocab, recall_samples

    cfg = json.loads((RUN / "train_config.json").read_text())
    model = LlamaForCausalLM.from_pretrained(RUN / "model").eval()
    vocab = RecallVocab(cfg["n_keys"], cfg["n_values"], cfg["n_filler"])
    samples = recall_samples(6, 256, 8, 4, vocab, seed=10_000)  # the bench's held-out seed
    full = evaluate_method(model, samples, "full", 1.0)
    assert full["accuracy"] >= 0.9
    s = evaluate_method(model, samples, "structkv", 0.2, 0.6, window_size=8, query_aware=True)
    assert s["pivot_layers"] == [2] and s["prefill_cost"] == pytest.approx(0.6, abs=0.02)
    assert abs(s["kv_fraction"] - 0.2) < 0.01
