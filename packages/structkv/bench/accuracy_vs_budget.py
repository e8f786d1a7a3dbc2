"""Accuracy vs KV budget for every method on the tiny associative-recall Llama (trained on CPU).

Loads the model written by ``python -m structkv.synthetic.train`` (``RUN/model`` + ``RUN/train_config.json``),
checks the gate (full-cache accuracy ≥ 0.9 on held-out samples, else the run is reported INVALID), then
evaluates full / StreamingLLM / SnapKV / PyramidKV / GemFilter / FastKV / StructKV at each KV budget, in three
protocols: ``agnostic`` (questions after the compressed context), ``mentions`` (the same, but every planted
key is re-mentioned alone ``--mentions`` times later in the context, so the pairs are referred to, as facts
in a document are) and ``aware`` (the question inside the compressed context).
Prints one line per method and budget with the ratio to full-cache accuracy measured in the same run;
writes results/accuracy_vs_budget.json and .png.

    uv run --locked python packages/structkv/bench/accuracy_vs_budget.py --run packages/structkv/bench/runs/recall10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ("streaming_llm", "snapkv", "pyramidkv", "gemfilter", "fastkv", "structkv")
# StructKV ablations of the spec (name -> press keyword arguments)
ABLATIONS = {
    "structkv[pivot=1]": {"pivot": 1},
    "structkv[kv_score=local]": {"kv_score": "local"},
    "structkv[layer_weighting=sharpness]": {"layer_weighting": "sharpness"},
    "structkv[centrality_queries=full]": {"centrality_queries": "full"},
}


def main() -> None:
    import torch
    from transformers import LlamaForCausalLM

    from papercore.machine import machine_info
    from structkv.evaluate import evaluate_method
    from structkv.synthetic.tasks import RecallVocab, recall_samples

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", type=Path, default=Path(__file__).parent / "runs" / "recall10")
    p.add_argument("--budgets", default="0.05,0.1,0.2,0.4")
    p.add_argument("--prefill-budget", type=float, default=0.6)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--window-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--protocols",
        default="agnostic,mentions,aware",
        help="agnostic: questions after the compressed context; mentions: the same, each key "
        "re-mentioned --mentions times later in the context; aware: question inside the context",
    )
    p.add_argument("--mentions", type=int, default=2)
    p.add_argument("--no-ablations", action="store_true", help="skip the StructKV ablation rows")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    cfg = json.loads((a.run / "train_config.json").read_text())
    if (a.run / "model").exists():
        model = LlamaForCausalLM.from_pretrained(a.run / "model").eval()
        model.config._attn_implementation = "sdpa"
    else:  # a run still in progress: its last checkpoint
        from structkv.synthetic.train import TrainConfig, build_model

        model = build_model(TrainConfig(**cfg)).eval()
        model.load_state_dict(torch.load(a.run / "ckpt.pt", weights_only=False)["model"])
    vocab = RecallVocab(cfg["n_keys"], cfg["n_values"], cfg["n_filler"])
    plain = recall_samples(a.n, a.length, a.pairs, a.queries, vocab, seed=10_000)
    mentioned = recall_samples(
        a.n, a.length, a.pairs, a.queries, vocab, seed=10_000, mentions=a.mentions
    )
    budgets = [float(x) for x in a.budgets.split(",")]
    rows = []
    gate = None
    for proto in a.protocols.split(","):
        if proto not in ("agnostic", "aware", "mentions"):
            raise SystemExit(f"unknown protocol {proto!r} (agnostic, aware, mentions)")
        aware = proto == "aware"
        samples = mentioned if proto == "mentions" else plain
        full = evaluate_method(model, samples, "full", 1.0, query_aware=aware)
        full["kv_budget"] = 1.0
        rows.append(full)
        full["protocol"] = proto
        if proto == "agnostic":
            gate = full["accuracy"]
        print(f"[{proto}] full           kv=1.00 acc={full['accuracy']:.3f}", flush=True)
        for b in budgets:
            cells = [(m, m, None) for m in METHODS]
            if not a.no_ablations:
                cells += [(name, "structkv", kw) for name, kw in ABLATIONS.items()]
            for m, method, kw in cells:
                r = evaluate_method(
                    model,
                    samples,
                    method,
                    b,
                    a.prefill_budget,
                    window_size=a.window_size,
                    query_aware=aware,
                    press_kwargs=kw,
                )
                r["method"] = m
                r["protocol"] = proto
                rows.append(r)
                ratio = r["accuracy"] / full["accuracy"] if full["accuracy"] else float("nan")
                print(
                    f"[{proto}] {m:36s} kv={b:.2f} acc={r['accuracy']:.3f} ({ratio:.2f}x full) "
                    f"prefill_cost={r['prefill_cost']:.2f} kv_fraction={r['kv_fraction']:.3f} "
                    f"pivots={r['pivot_layers']}",
                    flush=True,
                )
    valid = gate is not None and gate >= 0.9
    print(
        "GATE",
        "PASSED" if valid else "FAILED: full-cache accuracy < 0.9, comparison INVALID",
        f"({gate})",
    )
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": f"tiny Llama from {a.run}",
        "train_config": cfg,
        "length": a.length,
        "pairs": a.pairs,
        "queries_per_context": a.queries,
        "n_contexts": a.n,
        "window_size": a.window_size,
        "prefill_budget": a.prefill_budget,
        "gate_full_accuracy": gate,
        "valid": valid,
        "seconds": round(time.time() - t0, 1),
        "machine": machine_info(a.threads),
    }
    (a.out / "accuracy_vs_budget.json").write_text(
        json.dumps({"meta": meta, "results": rows}, indent=1)
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        protos = a.protocols.split(",")
        fig, axes = plt.subplots(1, len(protos), figsize=(5.5 * len(protos), 4), squeeze=False)
        for ax, proto in zip(axes[0], protos, strict=True):
            sel = [r for r in rows if r["protocol"] == proto]
            f = next(r for r in sel if r["method"] == "full")
            ax.axhline(f["accuracy"], color="k", ls="--", label="full")
            for m in (*METHODS, *ABLATIONS):
                pts = sorted((r["kv_budget"], r["accuracy"]) for r in sel if r["method"] == m)
                if pts:
                    style = {"ls": ":", "marker": "x"} if m in ABLATIONS else {"marker": "o"}
                    ax.plot([x for x, _ in pts], [y for _, y in pts], label=m, **style)
            ax.set_xscale("log")
            ax.set_xlabel("KV budget (fraction kept)")
            ax.set_ylabel("exact match")
            title = {
                "agnostic": "question after context",
                "mentions": "after context, keys re-mentioned",
            }
            ax.set_title(
                f"{title.get(proto, 'question inside context')}{'' if valid else ' (INVALID)'}"
            )
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.out / "accuracy_vs_budget.png", dpi=110)
    except ImportError:
        pass
    print(f"total {meta['seconds']}s")


if __name__ == "__main__":
    main()
