"""Classification miniature: hard labels (CE) vs uniform label smoothing (LS, ε = 0.1) vs KLS (reference).

Synthetic 6-class data (planted keywords; neighbouring classes share 30 % of them; 15 % ambiguous
texts), balanced (40/class) and 10:1 imbalanced (80 → 8/class, geometric) training splits, a
balanced test split (100/class). Two backbones: a tiny BERT built from config (hidden 32, 2 layers,
papercore's deterministic WordPiece vocabulary over its bundled corpus + the training texts;
40 epochs) and all-MiniLM-L6-v2 (8 epochs) with a fresh
classification head (AutoModelForSequenceClassification from papercore.testing.minilm_path()).
Seeds 0, 1, 2 (each seed: new data, new init; within a seed every method sees the same data and
the same initial weights, so methods are compared *paired*, seed by seed). Every finished run is
appended to the results JSON, so an interrupted bench resumes where it stopped (``--resume``);
``--summarize`` only re-analyses the JSON. Prints one line per (backbone, split, method) with
accuracy / macro-F1 mean ± std and the ratio to CE, the KLS/CE training-step time ratio, and the
README's paired table (per-seed deltas vs CE, win counts, paired t-test and sign test:
bench/paired.py).

Run: nice -n 10 uv run --locked python packages/kls/bench/classification.py [--seeds 3] [--resume]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from paired import fmt_deltas, fmt_p, paired  # bench/paired.py, beside this script

from kls.data import make_synthetic_classification
from kls.demo import tiny_bert_factory, wordpiece_tokenizer
from kls.experiment import train_and_evaluate
from papercore.machine import machine_info

METHODS = ("ce", "ls", "kls")
SPLITS = {
    "balanced": {"n_per_class": 40, "imbalance_ratio": 1.0},
    "imbalanced_10to1": {"n_per_class": 80, "imbalance_ratio": 10.0},
}
BACKBONES = {
    # name: (epochs, lr, batch size, max length)
    "tiny-bert": (40, 3e-3, 16, 48),
    "minilm": (8, 1e-4, 16, 48),
}
OUT = Path(__file__).parent / "results" / "classification.json"


def minilm_factory(num_labels: int):
    from transformers import AutoModelForSequenceClassification

    from papercore.testing import minilm_path

    path = str(minilm_path())

    def make(seed: int):
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)

    return make


def summarize(state: dict) -> dict:
    summary: dict = {}
    for backbone in BACKBONES:
        for split in SPLITS:
            mine = [r for r in state["runs"] if r["backbone"] == backbone and r["split"] == split]
            # compare methods on the seeds where all of them finished
            seeds = [
                s
                for s in {r["seed"] for r in mine}
                if {r["method"] for r in mine if r["seed"] == s} >= set(METHODS)
            ]
            runs = {
                m: [r for r in mine if r["method"] == m and r["seed"] in seeds] for m in METHODS
            }
            if not runs["ce"]:
                continue
            block = {}
            for m in METHODS:
                if not runs[m]:
                    continue
                acc = np.array([r["accuracy"] for r in runs[m]])
                f1 = np.array([r["macro_f1"] for r in runs[m]])
                step = np.array([r["seconds_per_step"] for r in runs[m]])
                block[m] = {
                    "n_seeds": len(runs[m]),
                    "accuracy_mean": float(acc.mean()),
                    "accuracy_std": float(acc.std()),
                    "macro_f1_mean": float(f1.mean()),
                    "macro_f1_std": float(f1.std()),
                    "seconds_per_step": float(step.mean()),
                }
            base = block["ce"]
            for m, s in block.items():
                print(
                    f"{backbone:9s} {split:16s} {m:4s} n={s['n_seeds']} acc {s['accuracy_mean']:.4f}±{s['accuracy_std']:.4f} "
                    f"({s['accuracy_mean'] / base['accuracy_mean']:.3f}x)  macro-F1 {s['macro_f1_mean']:.4f}"
                    f"±{s['macro_f1_std']:.4f} ({s['macro_f1_mean'] / base['macro_f1_mean']:.3f}x)  "
                    f"step {s['seconds_per_step']:.3f}s ({s['seconds_per_step'] / base['seconds_per_step']:.2f}x)"
                )
            for m in METHODS[1:]:  # paired against CE, seed by seed
                if not runs[m]:
                    continue
                for metric in ("accuracy", "macro_f1"):
                    by_seed = {mm: {r["seed"]: r[metric] for r in runs[mm]} for mm in ("ce", m)}
                    order = sorted(by_seed["ce"])
                    block[m][f"{metric}_paired_vs_ce"] = paired(
                        [by_seed["ce"][s] for s in order], [by_seed[m][s] for s in order]
                    ) | {"seeds": order}
            summary.setdefault(backbone, {})[split] = block
    for backbone, by_split in summary.items():
        pairs = [
            (b["kls"]["seconds_per_step"], b["ce"]["seconds_per_step"])
            for b in by_split.values()
            if "kls" in b
        ]
        if pairs:
            ratio = float(np.mean([k for k, _ in pairs]) / np.mean([c for _, c in pairs]))
            summary[backbone]["kls_over_ce_step_time"] = ratio
            print(f"training-step time KLS / CE on {backbone}: {ratio:.3f}x")
    print_paired_table(summary)
    return summary


NAMES = {"ce": "CE", "ls": "LS", "kls": "KLS"}


def print_paired_table(summary: dict) -> None:
    """The README table: each method minus CE on the same seed (same data, same init)."""
    print(
        "\n| backbone | split | metric | method | CE mean | method mean | Δ per seed (method − CE) "
        "| wins–ties–losses | mean Δ | paired t p | sign p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backbone, by_split in summary.items():
        for split, block in by_split.items():
            if not isinstance(block, dict):
                continue
            for metric in ("accuracy", "macro_f1"):
                for m in METHODS[1:]:
                    pr = block.get(m, {}).get(f"{metric}_paired_vs_ce")
                    if pr is None:
                        continue
                    print(
                        f"| {backbone} | {split} | {metric.replace('_', '-')} | {NAMES[m]} "
                        f"| {block['ce'][metric + '_mean']:.4f} | {block[m][metric + '_mean']:.4f} "
                        f"| {fmt_deltas(pr['deltas'])} | {pr['wins']}–{pr['ties']}–{pr['losses']} "
                        f"| {pr['mean_delta']:+.4f} | {fmt_p(pr['t_p'])} | {fmt_p(pr['sign_p'])} |"
                    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args()
    state = (
        json.loads(OUT.read_text())
        if (args.resume or args.summarize) and OUT.exists()
        else {"runs": []}
    )
    if args.summarize:
        state["summary"] = summarize(state)
        OUT.write_text(json.dumps(state, indent=2) + "\n")
        return
    torch.set_num_threads(2)
    state.update(
        {
            "settings": {
                b: dict(zip(("epochs", "lr", "batch_size", "max_length"), v, strict=True))
                for b, v in BACKBONES.items()
            },
            "splits": SPLITS,
            "machine": machine_info(),
        }
    )
    done = {(r["backbone"], r["split"], r["seed"], r["method"]) for r in state["runs"]}
    t_start = time.perf_counter()
    for seed in range(args.seeds):  # seed-major: every configuration gets seed 0 first
        for backbone in args.backbones:
            epochs, lr, bs, max_len = BACKBONES[backbone]
            for split, kw in SPLITS.items():
                if all((backbone, split, seed, m) in done for m in METHODS):
                    continue
                data = make_synthetic_classification(seed=100 + seed, **kw)
                if backbone == "tiny-bert":
                    tok = wordpiece_tokenizer(data["train"]["text"])
                    make = tiny_bert_factory(tok, num_labels=6)
                else:
                    from transformers import AutoTokenizer

                    from papercore.testing import minilm_path

                    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
                    make = minilm_factory(6)
                for m in METHODS:
                    if (backbone, split, seed, m) in done:
                        continue
                    r = train_and_evaluate(
                        m,
                        data,
                        make,
                        tok,
                        seed=seed,
                        epochs=epochs,
                        lr=lr,
                        batch_size=bs,
                        max_length=max_len,
                    )
                    state["runs"].append(
                        {"backbone": backbone, "split": split, "seed": seed, "method": m, **r}
                    )
                    state["wall_seconds"] = state.get("wall_seconds", 0.0) + r["train_seconds"]
                    OUT.write_text(json.dumps(state, indent=2) + "\n")
                    print(
                        f"  {backbone} {split} seed={seed} {m}: acc {r['accuracy']:.4f} F1 {r['macro_f1']:.4f} "
                        f"{r['seconds_per_step']:.3f}s/step",
                        flush=True,
                    )
    state["summary"] = summarize(state)
    OUT.write_text(json.dumps(state, indent=2) + "\n")
    print(f"this invocation: {(time.perf_counter() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
