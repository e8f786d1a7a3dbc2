"""Retrieval miniature: MNRL vs MNRL+KLS vs MNRL+LE, standard and cold-start splits.

Data: the shared synthetic generator (papercore.retrieval.make_synthetic_retrieval, seed 0: 288
documents, 144 queries, entity-level distinctions inside each topic). Standard split: a random 30 %
of queries held out (their entities' documents are also positives in training). Cold-start split:
whole groups of documents held out (kls.data.cold_start_split, by="document", 30 %): test queries'
relevant documents never appear in training. Training groups: 1 positive per query, 3 BM25 hard
negatives (bm25s). all-MiniLM-L6-v2, 1 epoch, batch 16, lr 5e-5, max length 96. KLS: §2.3
(α = 0.2, τ = 0.5, K_d = 10); LE: §2.4 with the BM25 prior, LE model = a copy of the same MiniLM
trained 1 epoch (α = 0.2, τ_LE = 0.1); LE-DeepCT: the same LE protocol with the DeepCT prior
(kls.DeepCTWeighter from the same MiniLM, trained 1 epoch on the training pairs' query term
recall, lr 2e-5, head lr 1e-3; queries keep BM25); all through SoftLabelRankingLoss (λ = 1). Evaluation:
papercore FaissRetriever (flat inner product) + evaluate_run (MRR@10, R@10, nDCG@10). Also the
zero-shot MiniLM and the LE baselines' labels (label propagation, kNN) with --baselines.

Run: OMP_NUM_THREADS=1 nice -n 10 uv run --locked python packages/kls/bench/retrieval.py \
         [--seeds 3] [--baselines] [--methods mnrl,mnrl+le-deepct] [--threads 1]
(--threads defaults to $OMP_NUM_THREADS, else 2.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from paired import fmt_deltas, fmt_p, paired, paired_queries  # bench/paired.py, beside this script
from sentence_transformers import (
    SentenceTransformer,
)

from kls import (
    KNNSmoothingEnhancer,
    LabelEnhancer,
    LabelPropagationEnhancer,
    RetrievalKeywordSmoother,
)
from kls.data import cold_start_split, make_synthetic_retrieval, make_training_groups
from kls.demo import RETRIEVAL_METHODS, fit_retriever
from papercore.machine import machine_info
from papercore.retrieval import FaissRetriever, RetrievalData, evaluate_run, per_query
from papercore.seeding import seed_everything
from papercore.testing import minilm_path

METRICS = ("MRR@10", "R@10", "nDCG@10")


def load_minilm() -> SentenceTransformer:
    m = SentenceTransformer(str(minilm_path()), device="cpu")
    m.max_seq_length = 96
    return m


def evaluate(model: SentenceTransformer, test: RetrievalData) -> dict:
    """Mean metrics, plus ``per_query`` values (``{metric: {qid: value}}``) for the paired tests."""
    r = FaissRetriever(model, index="flat", batch_size=64)
    r.index(test.corpus)
    run = r.search(test.queries, k=100)
    res: dict = evaluate_run(run, test.qrels, metrics=METRICS)
    res["per_query"] = {m: per_query(run, test.qrels, m) for m in METRICS}
    return res


NAMES = {
    "zero-shot": "zero-shot MiniLM",
    "mnrl": "MNRL",
    "mnrl+kls": "MNRL + KLS",
    "mnrl+le": "MNRL + LE (BM25 prior)",
    "mnrl+le-deepct": "MNRL + LE (DeepCT prior)",
    "mnrl+lp": "MNRL + LE-baseline: label propagation",
    "mnrl+knn": "MNRL + LE-baseline: kNN (GLLE-style)",
}


def analyse(results: dict) -> dict:
    """Paired comparisons of every method with MNRL (seed by seed; query by query when stored)."""
    out: dict = {}
    print(
        "\n| split | method | metric | MNRL mean | method mean | Δ per seed (method − MNRL) "
        "| wins–ties–losses | mean Δ | paired t p | sign p | per-query: better / worse (n) | per-query Wilcoxon p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for split, summary in results.items():
        base_runs = summary["mnrl"]["runs"]
        for m, s in summary.items():
            if m == "mnrl":
                continue
            for metric in METRICS:
                pr = paired([r[metric] for r in base_runs], [r[metric] for r in s["runs"]])
                pq = None
                if all("per_query" in r for r in base_runs + s["runs"]):
                    a, b = [], []
                    for rb, rm in zip(base_runs, s["runs"], strict=True):
                        qids = sorted(rb["per_query"][metric])
                        a += [rb["per_query"][metric][q] for q in qids]
                        b += [rm["per_query"][metric][q] for q in qids]
                    pq = paired_queries(a, b)
                out.setdefault(split, {}).setdefault(m, {})[metric] = {"seeds": pr, "queries": pq}
                q_cols = (
                    f"{pq['better']} / {pq['worse']} ({pq['n']}) | {fmt_p(pq['wilcoxon_p'])}"
                    if pq
                    else "not stored | -"
                )
                print(
                    f"| {split.replace('_', ' ')} | {NAMES.get(m, m)} | {metric} "
                    f"| {summary['mnrl'][metric]:.4f} | {s[metric]:.4f} | {fmt_deltas(pr['deltas'])} "
                    f"| {pr['wins']}–{pr['ties']}–{pr['losses']} | {pr['mean_delta']:+.4f} "
                    f"| {fmt_p(pr['t_p'])} | {fmt_p(pr['sign_p'])} | {q_cols} |"
                )
    return out


def train(ds, loss_name: str, seed: int) -> SentenceTransformer:
    """One epoch of MNRL or SoftLabelRankingLoss from MiniLM (the demo's training path)."""
    seed_everything(seed)
    model = load_minilm()
    fit_retriever(model, ds, soft=loss_name != "mnrl", seed=seed)
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--baselines", action="store_true", help="also train with LP / kNN LE labels")
    ap.add_argument(
        "--n-topics", type=int, default=12, help="synthetic topics (12 = the shared default)"
    )
    ap.add_argument(
        "--methods",
        default=",".join(RETRIEVAL_METHODS),
        help=f"comma-separated subset of {', '.join(RETRIEVAL_METHODS)} (mnrl is always run)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", "2")),
        help="torch threads",
    )
    ap.add_argument(
        "--splits",
        default="standard,cold_start",
        help="comma-separated subset of standard, cold_start",
    )
    ap.add_argument("--out", default="retrieval.json")
    ap.add_argument(
        "--analyse",
        metavar="JSON",
        help="only re-analyse a results file (bench/results/NAME): paired tables, no training",
    )
    args = ap.parse_args()
    if args.analyse:
        path = Path(__file__).parent / "results" / args.analyse
        doc = json.loads(path.read_text())
        doc["paired"] = analyse(doc["results"])
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    syn = make_synthetic_retrieval(n_topics=args.n_topics, seed=0)
    full = RetrievalData(
        corpus=syn.corpus,
        queries={**syn.train.queries, **syn.test.queries},
        qrels={**syn.train.qrels, **syn.test.qrels},
    )
    known = RETRIEVAL_METHODS
    asked = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m not in known for m in asked):
        raise SystemExit(f"--methods: unknown {sorted(set(asked) - set(known))}; known {known}")
    methods = [m for m in known if m == "mnrl" or m in asked]
    methods += ["mnrl+lp", "mnrl+knn"] if args.baselines else []
    results: dict = {}
    splits = [x.strip() for x in args.splits.split(",") if x.strip()]
    if not splits or set(splits) - {"standard", "cold_start"}:
        raise SystemExit(f"--splits: expected standard and/or cold_start, got {args.splits!r}")
    for split in splits:
        per_seed = {m: [] for m in ["zero-shot", *methods]}
        for seed in range(args.seeds):
            by = "query" if split == "standard" else "document"
            tr, te = cold_start_split(full, frac=0.3, by=by, seed=seed)
            ds = make_training_groups(tr, n_negatives=3, seed=seed, positives_per_query=1)
            per_seed["zero-shot"].append(evaluate(load_minilm(), te))  # same test split as the rest
            kls_ds = RetrievalKeywordSmoother(alpha=0.2, tau=0.5).fit(syn.corpus).to_dataset(ds)
            label_sets = {"mnrl": kls_ds, "mnrl+kls": kls_ds}
            le_seconds = {}
            for m, prior in (("mnrl+le", "bm25"), ("mnrl+le-deepct", "deepct")):
                if m not in methods:
                    continue
                t0 = time.perf_counter()
                le = LabelEnhancer(load_minilm(), weighter=prior, alpha=0.2, tau=0.1, seed=seed)
                label_sets[m] = le.fit(ds, corpus=syn.corpus).to_dataset(ds)
                le_seconds[m] = time.perf_counter() - t0
                del le
            if args.baselines:
                frozen = load_minilm()
                label_sets["mnrl+lp"] = LabelPropagationEnhancer(frozen).to_dataset(ds)
                label_sets["mnrl+knn"] = KNNSmoothingEnhancer(frozen).to_dataset(ds)
            for m in methods:
                t0 = time.perf_counter()
                model = train(label_sets[m], "mnrl" if m == "mnrl" else "soft", seed)
                secs = time.perf_counter() - t0
                res = evaluate(model, te)
                res["train_seconds"] = secs
                if m in le_seconds:
                    res["le_seconds"] = le_seconds[m]
                per_seed[m].append(res)
                print(
                    f"  {split} seed={seed} {m}: "
                    + " ".join(f"{k} {res[k]:.4f}" for k in METRICS)
                    + f" ({secs:.0f}s, {len(ds)} groups)",
                    flush=True,
                )
        summary = {}
        for m, runs in per_seed.items():
            summary[m] = {k: float(np.mean([r[k] for r in runs])) for k in METRICS}
            summary[m].update({f"{k}_std": float(np.std([r[k] for r in runs])) for k in METRICS})
            summary[m]["runs"] = runs
        base = summary["mnrl"]
        for m in ["zero-shot", *methods]:
            s = summary[m]
            print(
                f"{split:10s} {m:14s} "
                + "  ".join(
                    f"{k} {s[k]:.4f}±{s[k + '_std']:.4f} ({s[k] / base[k]:.3f}x)" for k in METRICS
                ),
                flush=True,
            )
        results[split] = summary
    total = time.perf_counter() - t_start
    print(f"total {total / 60:.1f} min")
    paired_results = analyse(results)
    out = Path(__file__).parent / "results" / args.out
    out.write_text(
        json.dumps(
            {
                "paired": paired_results,
                "results": results,
                "seeds": args.seeds,
                "splits": splits,
                "methods": methods,
                "torch_threads": args.threads,
                "total_seconds": total,
                "machine": machine_info(args.threads),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
