"""Training-step overhead of KLS (reference two-head objective) vs plain fine-tuning, same run.

The two objectives are timed in alternating short Trainer runs (after a warm-up run), repeated;
each run's median optimiser-step time (a callback around each step, Trainer setup excluded) is
taken, and the medians over repeats are compared: on a shared machine this interleaving keeps
background load from biasing one side. The fastest repeat of each side (min over repeats, as
``timeit`` does) is printed too: other processes on the same cores only ever slow a run down. Backbones: the tiny BERT and all-MiniLM-L6-v2 classifiers
of bench/classification.py, batch 16, max length 48.

Run: uv run --locked python packages/kls/bench/overhead.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from kls.data import make_synthetic_classification
from kls.demo import tiny_bert_factory, wordpiece_tokenizer
from kls.experiment import objective_args, soft_label_dataset
from kls.trainer import KLSTrainer, KLSTrainingArguments
from papercore.machine import bench_parser, machine_info
from papercore.testing import minilm_path

STEPS, REPEATS = 8, 5


class StepTimer(TrainerCallback):
    """Wall time of each optimiser step (forward, backward, update), without Trainer setup."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def time_steps(method, train, make, tok, steps):
    ds = soft_label_dataset(method, train).map(
        lambda b: tok(b["text"], truncation=True, max_length=48), batched=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = KLSTrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=16,
            max_steps=steps,
            learning_rate=1e-4,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            **objective_args(method),
        )
        timer = StepTimer()
        tr = KLSTrainer(
            model=make(0), args=args, train_dataset=ds, processing_class=tok, callbacks=[timer]
        )
        tr.train()
        return float(np.median(timer.times[1:] or timer.times))  # median step, first step dropped


def main() -> None:
    a = bench_parser(__doc__, Path(__file__).parent / "results" / "overhead.json").parse_args()
    torch.set_num_threads(2)
    data = make_synthetic_classification(n_per_class=40, seed=100)
    tiny_tok = wordpiece_tokenizer(data["train"]["text"])
    path = str(minilm_path())
    backbones = {
        "tiny-bert": (tiny_bert_factory(tiny_tok, num_labels=6), tiny_tok),
        "minilm": (
            lambda s: AutoModelForSequenceClassification.from_pretrained(path, num_labels=6),
            AutoTokenizer.from_pretrained(path),
        ),
    }
    res = {}
    for name, (make, tok) in backbones.items():
        time_steps("ce", data["train"], make, tok, 3)  # warm-up
        t = {"ce": [], "kls": []}
        for _ in range(REPEATS):
            for m in ("ce", "kls"):
                t[m].append(time_steps(m, data["train"], make, tok, STEPS))
        ce, kls = float(np.median(t["ce"])), float(np.median(t["kls"]))
        ce_min, kls_min = float(np.min(t["ce"])), float(np.min(t["kls"]))
        res[name] = {
            "ce_seconds_per_step": ce,
            "kls_seconds_per_step": kls,
            "ratio": kls / ce,
            "ce_min_seconds_per_step": ce_min,
            "kls_min_seconds_per_step": kls_min,
            "ratio_min": kls_min / ce_min,
            "raw": t,
        }
        print(
            f"{name:9s} plain CE   median {ce:.4f} s/step  1.000x | min {ce_min:.4f} s/step  1.000x"
        )
        print(
            f"{name:9s} KLS 2-head median {kls:.4f} s/step  {kls / ce:.3f}x | "
            f"min {kls_min:.4f} s/step  {kls_min / ce_min:.3f}x"
        )
    out = a.out
    out.write_text(
        json.dumps(
            {
                "results": res,
                "steps": STEPS,
                "repeats": REPEATS,
                "machine": machine_info(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
