"""Side-by-side evaluation: every method, the same model, the same contexts, the same budgets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from structkv.generation import generate, prefill
from structkv.registry import make_press


@dataclass
class EvalSample:
    """A context with one or more questions. ``answers[i]`` are the expected token ids (greedy prefix match)
    or, when ``answer_texts`` is given and a ``decode`` callable is passed, strings searched in the output."""

    context_ids: torch.Tensor  # (N,)
    question_ids: list[torch.Tensor]  # each (q,)
    answers: list[list[int]]
    answer_texts: list[list[str]] | None = None
    max_new_tokens: int = 8
    meta: dict = field(default_factory=dict)


def fastkv_equivalent_ratio(prefill_budget: float, n_layers: int, tsp_layer: float = 0.47) -> float:
    """The propagation ratio giving FastKV the compute budget ``prefill_budget`` at its fixed TSP layer."""
    frac = (int(tsp_layer * n_layers) + 1) / n_layers
    if frac >= 1:
        return 1.0
    return min(1.0, max(0.0, (prefill_budget - frac) / (1 - frac)))


def build_press(
    method: str, kv_budget: float, prefill_budget: float, n_layers: int, window_size: int, **kw
):
    """Press for one cell of the comparison (FastKV gets the compute-equivalent propagation ratio)."""
    if method == "fastkv":
        kw.setdefault(
            "propagation_ratio", max(kv_budget, fastkv_equivalent_ratio(prefill_budget, n_layers))
        )
    return make_press(
        method, kv_budget, prefill_budget=prefill_budget, window_size=window_size, **kw
    )


def _match(out_ids: list[int], answer: list[int], texts: list[str] | None, decode) -> bool:
    if texts is not None and decode is not None:
        text = decode(out_ids)
        return any(t.strip() and t.strip() in text for t in texts)
    return out_ids[: len(answer)] == answer


@torch.no_grad()
def evaluate_method(
    model: torch.nn.Module,
    samples: Sequence[EvalSample],
    method: str,
    kv_budget: float,
    prefill_budget: float = 0.6,
    window_size: int = 8,
    query_aware: bool = False,
    decode: Callable[[list[int]], str] | None = None,
    eos_token_id: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    press_kwargs: dict | None = None,
) -> dict[str, Any]:
    """Accuracy, realised prefill cost and KV fraction of ``method`` over ``samples``.

    Query-agnostic (default, kvpress): the context is compressed once and every question is answered from
    it. Query-aware: each question is appended to the context before compression (it lies in the window).
    """
    from structkv._compat import base_model

    n_layers = len(base_model(model).layers)
    device = next(model.parameters()).device
    correct = total = 0
    costs, kv_fracs, pivots = [], [], []
    t0 = time.perf_counter()
    it = progress(samples) if progress else samples
    for s in it:
        ctx = s.context_ids.to(device)
        jobs = []
        if query_aware:
            for q, a in zip(s.question_ids, s.answers, strict=True):
                jobs.append((torch.cat([ctx, q.to(device)]), None, a))
        else:
            jobs = [(ctx, q.to(device), a) for q, a in zip(s.question_ids, s.answers, strict=True)]
        shared = None
        for qi, (c, q, a) in enumerate(jobs):
            if shared is None or query_aware:
                press = build_press(
                    method, kv_budget, prefill_budget, n_layers, window_size, **(press_kwargs or {})
                )
                shared = prefill(model, c[None], press)
                costs.append(shared.stats["prefill_cost"])
                kv_fracs.append(shared.stats["kv_fraction"])
                pivots.append(shared.stats.get("pivot_layer"))
            out = generate(
                model,
                shared,
                None if q is None else q[None],
                max_new_tokens=s.max_new_tokens,
                eos_token_id=eos_token_id,
            )[0].tolist()
            texts = None if s.answer_texts is None else s.answer_texts[qi]
            correct += int(_match(out, a, texts, decode))
            total += 1
    return {
        "method": method,
        "kv_budget": kv_budget,
        "prefill_budget": prefill_budget if method in ("structkv", "fastkv") else None,
        "query_aware": query_aware,
        "accuracy": correct / max(1, total),
        "n": total,
        "prefill_cost": sum(costs) / max(1, len(costs)),
        "kv_fraction": sum(kv_fracs) / max(1, len(kv_fracs)),
        "pivot_layers": sorted({p for p in pivots if p is not None}),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def bootstrap_ci(hits: Sequence[int], n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of a mean of 0/1 outcomes."""
    t = torch.tensor(hits, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(t), (n_boot, len(t)), generator=g)
    means = t[idx].mean(1).sort().values
    return float(means[int(0.025 * n_boot)]), float(means[int(0.975 * n_boot) - 1])
