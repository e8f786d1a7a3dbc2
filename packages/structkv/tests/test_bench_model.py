"""The committed bench models still pass the gate through the bench's code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RUNS = Path(__file__).resolve().parents[1] / "bench" / "runs"
RUN = RUNS / "recall10"
# bench/miniature.py's StructKV settings for this 8-layer model (τ calibrated on its traces)
BENCH_STRUCTKV = {"pivot_tau": 0.15, "pivot_patience": 1, "pivot_range": (0.25, 0.45)}


@pytest.mark.skipif(not (RUN / "model").exists(), reason="bench checkpoint not in this checkout")
def test_committed_recall_model_passes_the_gate_and_structkv_meets_its_budget():
    from transformers import LlamaForCausalLM

    from structkv.evaluate import evaluate_method
    from structkv.synthetic.tasks import RecallVocab, recall_samples

    cfg = json.loads((RUN / "train_config.json").read_text())
    model = LlamaForCausalLM.from_pretrained(RUN / "model").eval()
    vocab = RecallVocab(cfg["n_keys"], cfg["n_values"], cfg["n_filler"])
    samples = recall_samples(6, 512, 4, 4, vocab, seed=20_000)  # the miniature's kv task, seed 0
    full = evaluate_method(model, samples, "full", 1.0)
    assert full["accuracy"] >= 0.9
    s = evaluate_method(
        model, samples, "structkv", 0.1, 0.6, window_size=8, press_kwargs=BENCH_STRUCTKV
    )
    assert set(s["pivot_layers"]) <= {2, 3}  # inside the range, so (l*+1)/L <= 0.5
    assert s["prefill_cost"] <= 0.6 + 1e-6
    assert s["kv_fraction"] == pytest.approx(0.1, abs=0.005)


@pytest.mark.skipif(not (RUNS / "twohop" / "model").exists(), reason="two-hop checkpoint absent")
def test_committed_twohop_model_answers_both_hops_with_the_full_cache():
    import torch
    from transformers import LlamaForCausalLM

    from structkv.generation import generate, prefill
    from structkv.synthetic.tasks import RecallVocab
    from structkv.tasks import two_hop_samples

    cfg = json.loads((RUNS / "twohop" / "train_config.json").read_text())
    model = LlamaForCausalLM.from_pretrained(RUNS / "twohop" / "model").eval()
    vocab = RecallVocab(cfg["n_keys"], cfg["n_values"], cfg["n_filler"])
    hits = total = 0
    for s in two_hop_samples(4, 512, 2, vocab, seed=30_000, n_distractors=2):
        res = prefill(model, s.context[None])
        for q, a in zip(s.questions, s.answers, strict=True):
            hits += generate(model, res, torch.tensor([q]), max_new_tokens=2)[0].tolist() == a
            total += 1
    assert hits / total >= 0.75
