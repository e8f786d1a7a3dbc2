"""Per-sample signals (spec §2.2): neighbour conflict, rarity, complexity, and the signals table.

The signals table has one row per training sample; :class:`ilp_diag.rules.ILPDiagnoser` applies its
rules to it. Columns (all optional except ``idx`` and ``unlearned``):

``unlearned, greedy_ok, pass_at_n, learn_score`` (detection on the SFT model); ``base_pass, base_conf,
base_nll, base_pref_margin`` (base model); ``final_nll`` (SFT model); ``stage_id, last_stage,
learned_at_stage_end`` (sequential SFT); ``nn_conflict, max_dup_sim`` (neighbours); ``rarity,
cluster_size``; ``complexity`` and its parts; ``final_loss, loss_slope, confidence, variability,
forget_events`` (loss trajectory); ``truncated``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ilp_diag.embed import embed_texts
from ilp_diag.errors import ConfigError, SignalsError
from ilp_diag.judges import ExactMatchJudge, Judge, check_score, normalize_answer
from ilp_diag.records import SampleRecord, validate_records

logger = logging.getLogger(__name__)

__all__ = [
    "base_consistency",
    "build_signals",
    "complexity_scores",
    "conflict_scores",
    "near_duplicate_clusters",
    "rarity_scores",
]


def _knn(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product k nearest neighbours with faiss (self excluded): sims, ids ``[n, k]`` (id −1 = none)."""
    import faiss

    n = emb.shape[0]
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    kk = min(k + 1, n)
    sims, ids = index.search(np.ascontiguousarray(emb, dtype=np.float32), kk)
    out_s = np.full((n, k), -1.0, dtype=np.float32)
    out_i = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        keep = [(s, j) for s, j in zip(sims[i], ids[i], strict=True) if j != i and j >= 0][:k]
        for c, (s, j) in enumerate(keep):
            out_s[i, c], out_i[i, c] = s, j
    return out_s, out_i


def conflict_scores(
    records: Iterable[SampleRecord | Mapping[str, Any]],
    embedder: Any = None,
    k: int = 10,
    dup_threshold: float = 0.9,
    judge: Judge | None = None,
) -> pd.DataFrame:
    """Near-duplicate conflict per sample (spec ``nn_conflict``).

    Among the ``k`` nearest training inputs (cosine of prompt embeddings; MiniLM by default, faiss
    ``IndexFlatIP``), the near-duplicates are those with similarity ≥ ``dup_threshold`` or identical
    normalised prompt. ``nn_conflict`` = fraction of near-duplicates whose target the ``judge`` (default
    normalised exact match) says is incompatible (J(y_j, y_i) < 0.5); 0 when there are none.

    Returns columns ``idx, nn_conflict, n_dups, max_dup_sim``.
    """
    recs = validate_records(records)
    if not 0 < dup_threshold <= 1:
        raise ConfigError(f"dup_threshold must be in (0, 1], got {dup_threshold}")
    judge = judge or ExactMatchJudge()
    norm = [normalize_answer(r.prompt) for r in recs]
    emb = embed_texts([r.prompt for r in recs], embedder)
    sims, ids = _knn(emb, max(1, min(k, len(recs) - 1)))
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(norm):
        by_prompt.setdefault(p, []).append(i)
    rows = []
    for i, r in enumerate(recs):
        dups = {
            int(j): float(s)
            for s, j in zip(sims[i], ids[i], strict=True)
            if j >= 0 and s >= dup_threshold
        }
        for j in by_prompt[norm[i]]:
            if j != i:
                dups[j] = 1.0
        bad = sum(
            check_score(judge(recs[j].target, r.target), recs[j].target, r.target) < 0.5
            for j in dups
        )
        rows.append(
            {
                "idx": r.idx,
                "nn_conflict": bad / len(dups) if dups else 0.0,
                "n_dups": len(dups),
                "max_dup_sim": max(dups.values()) if dups else float(sims[i].max(initial=0.0)),
            }
        )
    return pd.DataFrame(rows)


def near_duplicate_clusters(
    records: Iterable[SampleRecord | Mapping[str, Any]],
    embedder: Any = "hash",
    dup_threshold: float = 0.9,
    k: int = 10,
) -> list[list[int]]:
    """Connected components of the near-duplicate graph over prompts (positions into ``records``)."""
    recs = validate_records(records)
    emb = embed_texts([r.prompt for r in recs], embedder)
    sims, ids = _knn(emb, max(1, min(k, len(recs) - 1)))
    parent = list(range(len(recs)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    norm = [normalize_answer(r.prompt) for r in recs]
    first: dict[str, int] = {}
    for i in range(len(recs)):
        if norm[i] in first:
            parent[find(i)] = find(first[norm[i]])
        else:
            first[norm[i]] = i
        for s, j in zip(sims[i], ids[i], strict=True):
            if j >= 0 and s >= dup_threshold:
                parent[find(i)] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(recs)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def rarity_scores(
    records: Iterable[SampleRecord | Mapping[str, Any]],
    embedder: Any = None,
    n_clusters: int | str = "auto",
    seed: int = 0,
) -> pd.DataFrame:
    """Pattern rarity (spec ``rarity``): k-means over prompt embeddings, rarity = −log(cluster_size / n).

    ``n_clusters="auto"`` uses ``round(sqrt(n / 2))`` (at least 2, at most n). Returns ``idx, cluster,
    cluster_size, rarity``.
    """
    from sklearn.cluster import KMeans

    recs = validate_records(records)
    n = len(recs)
    if n_clusters == "auto":
        kc = max(2, round(math.sqrt(n / 2)))
    elif isinstance(n_clusters, int) and n_clusters >= 1:
        kc = n_clusters
    else:
        raise ConfigError(f"n_clusters must be 'auto' or a positive int, got {n_clusters!r}")
    kc = min(kc, n)
    emb = embed_texts([r.prompt for r in recs], embedder)
    labels = KMeans(n_clusters=kc, n_init=4, random_state=seed).fit_predict(emb)
    sizes = Counter(labels.tolist())
    size = np.array([sizes[c] for c in labels], dtype=float)
    return pd.DataFrame(
        {
            "idx": [r.idx for r in recs],
            "cluster": labels,
            "cluster_size": size.astype(int),
            "rarity": -np.log(size / n),
        }
    )


_STEP = re.compile(r"(?:\n|;|\bthen\b|\band\b|->|=)")
_ENT = re.compile(r"\b(?:[A-Z][a-z0-9]+|\d+)\b")


def _depth(text: str) -> int:
    d = best = 0
    for ch in text:
        if ch in "([{":
            d += 1
            best = max(best, d)
        elif ch in ")]}":
            d = max(0, d - 1)
    return best


def complexity_scores(records: Iterable[SampleRecord | Mapping[str, Any]]) -> pd.DataFrame:
    """Complexity features (spec ``complexity``): target length (words), reasoning steps (newlines, ``;``,
    "then", "and", "->", "=" in prompt + target), entities (capitalised words and numbers in the prompt),
    bracket nesting depth. ``complexity`` = mean of the four features' percentile ranks over the dataset.

    Returns ``idx, target_len, n_steps, n_entities, depth, complexity``.
    """
    recs = validate_records(records)
    df = pd.DataFrame(
        {
            "idx": [r.idx for r in recs],
            "target_len": [len(r.target.split()) for r in recs],
            "n_steps": [len(_STEP.findall(r.prompt + "\n" + r.target)) for r in recs],
            "n_entities": [len(_ENT.findall(r.prompt)) for r in recs],
            "depth": [_depth(r.prompt + r.target) for r in recs],
        }
    )
    parts = ["target_len", "n_steps", "n_entities", "depth"]
    df["complexity"] = df[parts].rank(pct=True).mean(axis=1)
    return df


def base_consistency(greedy: list[str], samples: list[list[str]]) -> np.ndarray:
    """Self-consistency confidence of the base model (spec ``base_conf``): fraction of the greedy and
    sampled answers equal (normalised) to the modal answer. ``[len(greedy)]``."""
    out = np.zeros(len(greedy))
    for i, (g, s) in enumerate(zip(greedy, samples, strict=True)):
        answers = [normalize_answer(x) for x in [g, *s]]
        out[i] = Counter(answers).most_common(1)[0][1] / len(answers)
    return out


def build_signals(
    records: Iterable[SampleRecord | Mapping[str, Any]],
    detection: pd.DataFrame,
    *parts: pd.DataFrame | None,
) -> pd.DataFrame:
    """Join the detection table with signal tables on ``idx`` (left join; ``None`` parts skipped).

    Adds ``stage_id`` from the records and ``last_stage`` (max stage id). Raises :class:`SignalsError`
    when ``detection`` lacks ``idx``/``unlearned`` or does not cover every record.
    """
    recs = validate_records(records)
    for col in ("idx", "unlearned"):
        if col not in detection.columns:
            raise SignalsError(
                f"detection table lacks column {col!r}; got {list(detection.columns)}"
            )
    base = pd.DataFrame(
        {
            "idx": [r.idx for r in recs],
            "stage_id": [r.stage_id for r in recs],
            "task": [r.task for r in recs],
        }
    )
    det = detection.drop(columns=[c for c in ("stage_id", "task") if c in detection.columns])
    missing = set(base["idx"]) - set(det["idx"])
    if missing:
        raise SignalsError(
            f"detection table misses {len(missing)} record idx, e.g. {sorted(missing)[:5]}"
        )
    out = base.merge(det, on="idx", how="left")
    for p in parts:
        if p is None:
            continue
        if "idx" not in p.columns:
            raise SignalsError(f"signal table lacks an 'idx' column; got {list(p.columns)}")
        dup = [c for c in p.columns if c in out.columns and c != "idx"]
        out = out.merge(p.drop(columns=dup), on="idx", how="left")
    out["last_stage"] = int(out["stage_id"].max())
    return out
