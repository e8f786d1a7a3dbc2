"""Throughput of soft-label generation (reference KLS) on 100k synthetic documents.

Vectorised (sparse CountVectorizer + scipy) vs a straightforward per-word Python loop over the
same statistics (run on a 5k-document slice, values checked equal). Prints docs/s and the ratio.
Run: nice -n 10 uv run --locked python packages/kls/bench/speed.py
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from kls import KeywordLabelSmoother
from papercore.machine import bench_parser, machine_info

N_DOCS, N_WORDS, N_LABELS, VOCAB = 100_000, 50, 10, 20_000


def make_docs(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_LABELS, n)
    # each label prefers its own slice of the vocabulary (Zipf-ish background + label words)
    bg = rng.zipf(1.3, size=(n, N_WORDS)) % VOCAB
    own = (labels[:, None] * 500 + rng.integers(0, 500, size=(n, N_WORDS))) % VOCAB
    pick = rng.random((n, N_WORDS)) < 0.3
    ids = np.where(pick, own, bg)
    return [" ".join(f"w{i}" for i in row) for row in ids], labels.tolist()


def loop_reference(texts, labels, queries, k1=2.0, b=0.75, k2=2.0):
    """The reference formulas with a Python loop per word × label (the slow baseline)."""
    L = N_LABELS
    f = [Counter() for _ in range(L)]
    df = Counter()
    total = 0
    for t, y in zip(texts, labels, strict=True):
        toks = t.split()
        total += len(toks)
        f[y].update(toks)
        df.update(set(toks))
    len_i = [sum(c.values()) for c in f]
    avglen = sum(len_i) / L
    Lw = Counter(w for c in f for w in c)
    N, avg_tok = len(texts), total / len(texts)
    t_fit_done = time.perf_counter()
    out = []
    for t in queries:
        cx = Counter(t.split())
        s = []
        for i in range(L):
            K = k1 * (1 - b + b * len_i[i] / avglen)
            v = 0.0
            for w, fx in cx.items():
                fi = f[i].get(w, 0)
                if fi == 0 or df.get(w, 0) == 0:
                    continue
                wlr = fi * k1 / (fi + K) * (math.log(L / Lw[w]) + 1)
                wir = (math.log(N / df[w]) + 1) * (fx * k2 / (fx + k2))
                v += wlr * wir
            s.append(v / avg_tok)
        m = max(s)
        e = [math.exp(x - m) for x in s]
        out.append([x / sum(e) for x in e])
    return np.asarray(out), time.perf_counter() - t_fit_done


def main() -> None:
    a = bench_parser(__doc__, Path(__file__).parent / "results" / "speed.json").parse_args()
    texts, labels = make_docs(N_DOCS)
    t0 = time.perf_counter()
    sm = KeywordLabelSmoother().fit(texts, labels)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = sm.transform(texts)
    t_tr = time.perf_counter() - t0
    vec_rate = N_DOCS / t_tr
    vec_total = N_DOCS / (t_fit + t_tr)

    n_loop = 5_000
    t0 = time.perf_counter()
    q_loop, t_loop = loop_reference(texts, labels, texts[:n_loop])
    t_loop_fit = time.perf_counter() - t0 - t_loop
    loop_rate = n_loop / t_loop
    max_diff = float(np.abs(q_loop - q[:n_loop]).max())

    print(
        f"per-word Python loop   {loop_rate:10,.0f} docs/s  1.00x  (transform of {n_loop} docs; its fit on 100k: {t_loop_fit:.1f}s)"
    )
    print(f"sparse, transform only {vec_rate:10,.0f} docs/s  {vec_rate / loop_rate:.2f}x")
    print(
        f"sparse, fit+transform  {vec_total:10,.0f} docs/s  {vec_total / loop_rate:.2f}x  (fit {t_fit:.2f}s, transform {t_tr:.2f}s)"
    )
    print(f"max |q_sparse - q_loop| = {max_diff:.2e}")
    res = {
        "docs": N_DOCS,
        "words_per_doc": N_WORDS,
        "labels": N_LABELS,
        "fit_seconds": t_fit,
        "transform_seconds": t_tr,
        "transform_docs_per_s": vec_rate,
        "fit_transform_docs_per_s": vec_total,
        "loop_docs_per_s": loop_rate,
        "loop_fit_seconds": t_loop_fit,
        "loop_docs": n_loop,
        "max_abs_diff": max_diff,
        "machine": machine_info(),
    }
    out = a.out
    out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
