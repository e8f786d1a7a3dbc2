"""Large-scale indexing with ``FaissRetriever``: build time, peak memory and recall@10 vs flat at ≥ 1M vectors.

The corpus is synthetic (no model, no download): ``--n`` vectors of dimension ``--dim`` drawn from a
mixture of 4 096 Gaussian clusters (a crude stand-in for the clustered geometry of real embeddings),
written once to a ``.npy`` file. Every index is built through the real code path,
``FaissRetriever.index(corpus)``, with an encoder that reads row ``i`` of that file for the text
``"i"`` (so chunked encoding, sampled training and adding are what is measured, not a shortcut),
in its **own process**, so that the peak resident memory (``ru_maxrss``) of each build is its own.

* ``flat`` is the exact reference: its top-10 for ``--queries`` queries is the ground truth;
* ``flat, chunk = N`` encodes the whole corpus at once (what ``index()`` did before chunking);
* ``IVF1024,Flat``, ``IVF1024,SQ8``, ``IVF1024,PQ32`` (factory strings; trained on a random sample
  of 65 536 vectors), ``HNSW32`` (efConstruction 40, efSearch 128) on the first 200 000 vectors
  only (``@n=200000``: at 1M its graph build is ~8 CPU-minutes, beyond this shared machine's
  budget), with recall against the exact top-10 of that subset;
* mmap: the saved flat and IVF indexes are loaded with ``FaissRetriever.load(mmap=True)`` and
  without, and the resident memory after loading and after searching is reported.

    OMP_NUM_THREADS=2 nice uv run --locked python packages/quadbert/bench/bench_index_scale.py \
        --queries 500 --data-dir /tmp/index-scale       # rerunnable: finished indexes are kept

Writes ``results/index_scale.json`` and prints the README table (``--table`` reprints it from the
JSON without running anything).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SPECS = ("flat", "flat@N", "IVF1024,Flat", "IVF1024,SQ8", "IVF1024,PQ32", "HNSW32@n=200000")
MMAP_SPECS = ("flat", "IVF1024,Flat")
N_CLUSTERS = 4096


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_vectors(path: Path, n: int, dim: int, n_queries: int, seed: int) -> None:
    """Write base vectors ``[n, dim]`` and queries ``[n_queries, dim]`` (float32 ``.npy``), chunk by chunk."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((N_CLUSTERS, dim)).astype(np.float32)
    base = np.lib.format.open_memmap(path / "base.npy", "w+", np.float32, (n, dim))
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        base[start : start + m] = centers[
            rng.integers(0, N_CLUSTERS, m)
        ] + 0.7 * rng.standard_normal((m, dim), dtype=np.float32)
    base.flush()
    del base
    q = centers[rng.integers(0, N_CLUSTERS, n_queries)] + 0.7 * rng.standard_normal(
        (n_queries, dim), dtype=np.float32
    )
    np.save(path / "queries.npy", q)


class RowEncoder:
    """An "encoder" whose text ``"i"`` is row ``i`` of a memory-mapped ``.npy`` file."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        self.rows = np.load(path, mmap_mode="r")

    def get_embedding_dimension(self) -> int:
        return int(self.rows.shape[1])

    def encode(self, texts, **_: object):
        import numpy as np

        return np.asarray(self.rows[np.fromiter((int(t) for t in texts), np.int64)])


def worker(args: argparse.Namespace) -> dict:
    """Build one index in this process; report time, peak RSS, and (optionally) save it."""
    import faiss
    import numpy as np

    from papercore.retrieval import FaissRetriever

    faiss.omp_set_num_threads(args.threads)
    data = Path(args.data)
    base_rss = _rss_mb()
    spec, chunk, n = _parse_spec(args.worker, args.n)
    corpus = {str(i): str(i) for i in range(n)}  # the ids and "texts"
    ids_rss = _current_rss_mb()
    r = FaissRetriever(
        RowEncoder(data / "base.npy"),
        spec,
        chunk_size=chunk or args.chunk_size,
        ef_construction=40,
        ef_search=128,
        nprobe=args.nprobe,
    )
    t, c = time.perf_counter(), _cpu_s()
    r.index(corpus)
    build_s, build_cpu_s = time.perf_counter() - t, _cpu_s() - c
    peak = _rss_mb()
    q = np.load(data / "queries.npy")
    t, c = time.perf_counter(), _cpu_s()
    ids, _ = r.search_embeddings(q, k=10)
    search_ms = (time.perf_counter() - t) * 1000 / len(q)
    search_cpu_ms = (_cpu_s() - c) * 1000 / len(q)
    found = np.array([[int(i) for i in row] + [-1] * (10 - len(row)) for row in ids])
    np.save(data / f"top10-{args.worker.replace(',', '_')}.npy", found)
    if args.save:
        r.save(data / f"index-{args.worker.replace(',', '_')}")
    res = {
        "spec": args.worker,
        "n": n,
        "build_s": build_s,
        "build_cpu_s": build_cpu_s,
        "peak_rss_mb": peak,
        "rss_before_mb": base_rss,
        "rss_with_corpus_dict_mb": ids_rss,
        "search_ms_per_query": search_ms,
        "search_cpu_ms_per_query": search_cpu_ms,
        "nlist": r.nlist,
        "nprobe": r.nprobe if r.nlist else None,
        "chunk_size": r.chunk_size,
        "train_size": r.train_size,
    }
    from papercore.io import write_json

    write_json(_result_file(data, args.worker), res)  # a rerun with the same --data-dir skips it
    return res


def _parse_spec(spec: str, n: int) -> tuple[str, int | None, int]:
    """``"X"`` → (X, default chunk, n); ``"X@N"`` → whole corpus in one chunk; ``"X@n=K"`` → the
    first K vectors only (for an index too slow to build at full size on this machine)."""
    if spec.endswith("@N"):
        return spec[:-2], 10**12, n
    if "@n=" in spec:
        name, k = spec.split("@n=")
        return name, None, min(n, int(k))
    return spec, None, n


def _result_file(data: Path, spec: str) -> Path:
    return data / f"result-{spec.replace(',', '_')}.json"


def load_worker(args: argparse.Namespace) -> dict:
    """Load a saved index with or without mmap; resident memory after loading and after searching."""
    import faiss
    import numpy as np

    from papercore.retrieval import FaissRetriever

    faiss.omp_set_num_threads(args.threads)
    data = Path(args.data)
    before = _current_rss_mb()
    t = time.perf_counter()
    r = FaissRetriever.load(data / f"index-{args.load.replace(',', '_')}", mmap=args.mmap)
    load_s = time.perf_counter() - t
    loaded = _current_rss_mb()
    q = np.load(data / "queries.npy")
    t = time.perf_counter()
    ids, _ = r.search_embeddings(q[:100], k=10)
    search_ms = (time.perf_counter() - t) * 1000 / 100
    return {
        "spec": args.load,
        "mmap": args.mmap,
        "load_s": load_s,
        "rss_after_load_mb": loaded - before,
        "rss_after_100_queries_mb": _current_rss_mb() - before,
        "search_ms_per_query": search_ms,
        "top1": [row[0] for row in ids[:5]],
    }


def _child(extra: list[str], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--data", args.data, "--n", str(args.n), "--threads",
           str(args.threads), "--chunk-size", str(args.chunk_size), "--nprobe", str(args.nprobe),
           *extra]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    tmp = None
    if args.data_dir:
        data = Path(args.data_dir)
        data.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="index-scale-", dir=args.tmp)
        data = Path(tmp.name)
    args.data = str(data)
    shape = {"n": args.n, "dim": args.dim, "queries": args.queries, "seed": args.seed}
    shape_file = data / "vectors.json"
    if not (shape_file.is_file() and json.loads(shape_file.read_text()) == shape):
        t = time.perf_counter()
        make_vectors(data, args.n, args.dim, args.queries, args.seed)
        shape_file.write_text(json.dumps(shape))
        print(f"generated {args.n} × {args.dim} vectors in {time.perf_counter() - t:.0f} s")
    builds = []
    for spec in args.specs:
        cached = _result_file(data, spec)
        if cached.is_file():
            row = json.loads(cached.read_text())
            print(f"{spec:14s} (result of an earlier run in {data})", flush=True)
        else:
            extra = ["--worker", spec] + (["--save"] if spec in MMAP_SPECS else [])
            row = _child(extra, args)
        builds.append(row)
        print(
            f"{spec:14s} build {row['build_s']:7.1f} s ({row['build_cpu_s']:.1f} s CPU)  peak RSS {row['peak_rss_mb']:7.0f} MiB  "
            f"search {row['search_ms_per_query']:.2f} ms/q",
            flush=True,
        )
    truth = np.load(data / "top10-flat.npy")
    for row in builds:
        found = np.load(data / f"top10-{row['spec'].replace(',', '_')}.npy")
        ref = truth if row.get("n", args.n) == args.n else _exact_top10(data, row["n"])
        hits = [
            len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), ref.tolist(), strict=True)
        ]
        row["recall@10_vs_flat"] = float(np.mean(hits))
    loads = []
    for spec in MMAP_SPECS:
        if spec not in args.specs:
            continue
        for mmap in (False, True):
            loads.append(_child(["--load", spec] + (["--mmap"] if mmap else []), args))
    size = {
        spec: sum(f.stat().st_size for f in (data / f"index-{spec.replace(',', '_')}").iterdir())
        / 2**20
        for spec in MMAP_SPECS
        if spec in args.specs
    }
    for row in loads:
        row["files_mb"] = size[row["spec"]]
    if tmp is not None:
        tmp.cleanup()
    return {
        "setup": {
            "n": args.n,
            "dim": args.dim,
            "queries": args.queries,
            "clusters": N_CLUSTERS,
            "seed": args.seed,
            "threads": args.threads,
            "chunk_size": args.chunk_size,
            "nprobe": args.nprobe,
            "raw_vectors_mb": args.n * args.dim * 4 / 2**20,
            "cpu": _cpu_name(),
        },
        "builds": builds,
        "loads": loads,
        "total_s": time.perf_counter() - t0,
    }


def _exact_top10(data: Path, n: int):
    """Exact inner-product top-10 of the queries over the first ``n`` (normalised) vectors."""
    import numpy as np

    base = np.load(data / "base.npy", mmap_mode="r")
    q = np.load(data / "queries.npy")
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    best = np.full((len(q), 10), -np.inf, dtype=np.float32)
    ids = np.zeros((len(q), 10), dtype=np.int64)
    for start in range(0, n, 100_000):
        x = np.asarray(base[start : min(n, start + 100_000)])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = q @ x.T
        allv = np.concatenate([best, s], axis=1)
        alli = np.concatenate([ids, np.arange(start, start + len(x))[None].repeat(len(q), 0)], 1)
        top = np.argsort(-allv, axis=1)[:, :10]
        best, ids = np.take_along_axis(allv, top, 1), np.take_along_axis(alli, top, 1)
    return ids


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def table(res: dict) -> str:
    s = res["setup"]
    lines = [
        f"N = {s['n']:,} vectors × {s['dim']} (raw float32: {s['raw_vectors_mb']:.0f} MiB), "
        f"{s['queries']} queries, {s['threads']} faiss thread(s), chunk {s['chunk_size']:,}, "
        f"nprobe {s['nprobe']}",
        "",
        "| index (`FaissRetriever(index=...)`) | N | build CPU s (wall s) | peak RSS MiB "
        "| recall@10 vs flat | ms / query (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for b in res["builds"]:
        name = b["spec"].split("@")[0]
        if b["spec"].endswith("@N"):
            name += ", whole corpus in one chunk"
        cpu_ms = b.get("search_cpu_ms_per_query")
        ms = f"{cpu_ms:.2f}" if cpu_ms is not None else f"{b['search_ms_per_query']:.2f} (wall)"
        lines.append(
            f"| {name} | {b.get('n', s['n']):,} | {b['build_cpu_s']:.1f} ({b['build_s']:.0f}) "
            f"| {b['peak_rss_mb']:.0f} | {b['recall@10_vs_flat']:.4f} | {ms} |"
        )
    if res["loads"]:
        lines += [
            "",
            "| load | files MiB | RSS after load MiB | RSS after 100 queries MiB | load s |",
            "|---|---|---|---|---|",
        ]
        for r in res["loads"]:
            lines.append(
                f"| {r['spec']}{' (mmap)' if r['mmap'] else ''} | {r['files_mb']:.0f} | "
                f"{r['rss_after_load_mb']:.0f} | {r['rss_after_100_queries_mb']:.0f} | "
                f"{r['load_s']:.2f} |"
            )
    lines.append(f"\ntotal {res['total_s']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--chunk-size", type=int, default=65_536)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--tmp", default=None, help="where a temporary data folder is made")
    ap.add_argument(
        "--data-dir",
        default=None,
        help="keep vectors, indexes and per-index results here; a rerun skips finished indexes",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "index_scale.json")
    ap.add_argument("--table", action="store_true", help="print the table from --out and exit")
    # internal: one build / one load in a child process
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.load:
        print(json.dumps(load_worker(args)))
        return
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    res = run(args)
    from papercore.io import write_json

    write_json(args.out, res)
    print()
    print(table(res))


if __name__ == "__main__":
    main()
