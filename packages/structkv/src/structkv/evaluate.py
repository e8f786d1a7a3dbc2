"""Side-by-side evaluation: every method, the same model, the same contexts, the same budgets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from structkv.generation import generate, prefill
from structkv.metrics import MetricError
from structkv.registry import make_press


@dataclass
class EvalSample:
    """A context with one or more questions. ``answers[i]`` are the expected token ids (greedy prefix match)
    or, when ``answer_texts`` is given and a ``decode`` callable is passed, strings scored against the
    decoded output (substring match, plus the LongBench metric of ``dataset``, see
    :mod:`structkv.metrics`). ``all_classes`` is the label set of classification tasks (trec, lsht)."""

    context_ids: torch.Tensor  # (N,)
    question_ids: list[torch.Tensor]  # each (q,)
    answers: list[list[int]]
    answer_texts: list[list[str]] | None = None
    max_new_tokens: int = 8
    meta: dict = field(default_factory=dict)
    dataset: str | None = None
    all_classes: list[str] | None = None


def normalize_record(r: dict) -> dict:
    """A record in structkv's columns (``context``, ``question``, ``answer``) from structkv/RULER or
    LongBench columns (``context``, ``input``, ``answers``, ``all_classes``, ``dataset``)."""
    if "context" not in r:
        raise MetricError(f"a record needs a 'context' column, got columns {sorted(r)}")
    question = r.get("question", r.get("input"))
    answer = r.get("answer", r.get("answers"))
    if question is None or answer is None:
        raise MetricError(
            "a record needs 'question' (or LongBench's 'input') and 'answer' (or 'answers'), "
            f"got columns {sorted(r)}"
        )
    answers = [str(a) for a in (answer if isinstance(answer, list) else [answer])]
    if not answers:
        raise MetricError(f"a record needs at least one answer, got {answer!r}")
    return {**r, "question": str(question), "answer": answers}


def records_to_eval_samples(
    records: Sequence[dict],
    tokenizer,
    chat_template: bool = True,
    max_context_tokens: int | None = None,
    default_max_new_tokens: int = 16,
) -> list[EvalSample]:
    """Tokenise records for :func:`evaluate_method`, in the prompt layout of the pipeline.

    With ``chat_template=True`` and a tokenizer that has one, the context opens a user turn and the
    question (+ template tail + ``answer_prefix``) closes it (:func:`structkv.prompts.prompt_ids`);
    otherwise the plain prompt of ``text_tasks.records_to_samples``. ``max_context_tokens`` keeps the
    *last* N context tokens (the end of the document, next to the question).
    """
    from structkv.prompts import prompt_ids

    samples = []
    for raw in records:
        r = normalize_record(raw)
        ctx, (q,) = prompt_ids(
            tokenizer, r["context"], [r["question"]], r.get("answer_prefix", ""), chat_template
        )
        if max_context_tokens is not None:
            ctx = ctx[-max_context_tokens:]
        ans = r["answer"]
        samples.append(
            EvalSample(
                context_ids=torch.tensor(ctx),
                question_ids=[torch.tensor(q)],
                answers=[tokenizer(" " + ans[0], add_special_tokens=False)["input_ids"]],
                answer_texts=[ans],
                max_new_tokens=int(r.get("max_new_tokens", default_max_new_tokens)),
                dataset=r.get("dataset"),
                all_classes=r.get("all_classes"),
            )
        )
    return samples


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


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
    question_mode: str = "masked",
    metric: str = "auto",
) -> dict[str, Any]:
    """Accuracy, LongBench score, latency, memory, realised prefill cost and KV fraction of ``method``.

    Query-agnostic (default, kvpress): the context is compressed once and every question is answered from
    it. Query-aware: each question is appended to the context before compression (it lies in the window),
    then asked **again** through the compressed cache (as ``bench/miniature.py``): the first answer token
    is read after the repeated question, so every answer token depends on the compressed cache, not on the
    uncompressed prefill's last logits.

    Returns ``accuracy`` (substring match of a gold answer in the decoded output, or greedy prefix match
    of the answer ids without ``decode``), ``score`` (mean LongBench metric, ``metric="auto"`` picks it by
    each sample's ``dataset``; equals ``accuracy`` without ``decode``), ``scores_by_metric``,
    ``ttft_s`` (prefill + question block → first token, for the first question of each context: what
    a user asking one question waits), ``question_ttft_s`` (first token of a later question on the
    already-compressed context), ``prefill_s``, ``decode_s_per_token``, ``peak_memory_bytes``
    (``torch.cuda.max_memory_allocated`` over the cell on CUDA, ``None`` on CPU), plus the press's
    realised ``prefill_cost`` / ``kv_fraction`` and the pivot layers. Latencies are wall clock,
    CUDA-synchronised.
    """
    from structkv._compat import base_model
    from structkv.metrics import longbench_score, metric_for

    n_layers = len(base_model(model).layers)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    correct = total = 0
    costs, kv_fracs, pivots = [], [], []
    scores: list[float] = []
    by_metric: dict[str, list[float]] = {}
    ttft, q_ttft, prefill_s, decode_s, decode_steps = [], [], [], 0.0, 0
    t0 = time.perf_counter()
    it = progress(samples) if progress else samples
    for s in it:
        ctx = s.context_ids.to(device)
        jobs = []
        if query_aware:
            for q, a in zip(s.question_ids, s.answers, strict=True):
                q = q.to(device)
                jobs.append((torch.cat([ctx, q]), q, a))
        else:
            jobs = [(ctx, q.to(device), a) for q, a in zip(s.question_ids, s.answers, strict=True)]
        shared = None
        for qi, (c, q, a) in enumerate(jobs):
            fresh = shared is None or query_aware
            if fresh:
                press = build_press(
                    method, kv_budget, prefill_budget, n_layers, window_size, **(press_kwargs or {})
                )
                _sync(device)
                tp = time.perf_counter()
                shared = prefill(model, c[None], press)
                _sync(device)
                prefill_s.append(time.perf_counter() - tp)
                costs.append(shared.stats["prefill_cost"])
                kv_fracs.append(shared.stats["kv_fraction"])
                pivots.append(shared.stats.get("pivot_layer"))
            timing: dict = {}
            out = generate(
                model,
                shared,
                None if q is None else q[None],
                max_new_tokens=s.max_new_tokens,
                eos_token_id=eos_token_id,
                question_mode=question_mode,
                timings=timing,
            )[0].tolist()
            if qi == 0:
                ttft.append(prefill_s[-1] + timing["first_token_s"])
            else:
                q_ttft.append(timing["first_token_s"] + (prefill_s[-1] if fresh else 0.0))
            decode_s += timing["decode_s"]
            decode_steps += timing["decode_steps"]
            texts = None if s.answer_texts is None else s.answer_texts[qi]
            hit = _match(out, a, texts, decode)
            correct += int(hit)
            total += 1
            if texts is not None and decode is not None:
                if eos_token_id is not None and eos_token_id in out:
                    out = out[: out.index(eos_token_id)]
                name = metric_for(s.dataset, metric)
                sc = longbench_score(decode(out), texts, name, s.dataset, s.all_classes)
            else:
                name, sc = "prefix_match", float(hit)
            scores.append(sc)
            by_metric.setdefault(name, []).append(sc)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return {
        "method": method,
        "kv_budget": kv_budget,
        "prefill_budget": prefill_budget if method in ("structkv", "fastkv") else None,
        "query_aware": query_aware,
        "question_mode": question_mode,
        "accuracy": correct / max(1, total),
        "score": sum(scores) / max(1, len(scores)),
        "scores_by_metric": {k: sum(v) / len(v) for k, v in sorted(by_metric.items())},
        "n": total,
        "prefill_cost": sum(costs) / max(1, len(costs)),
        "kv_fraction": sum(kv_fracs) / max(1, len(kv_fracs)),
        "pivot_layers": sorted({p for p in pivots if p is not None}),
        "prefill_s": _mean(prefill_s),
        "ttft_s": _mean(ttft),
        "question_ttft_s": _mean(q_ttft),
        "decode_s_per_token": decode_s / decode_steps if decode_steps else None,
        "peak_memory_bytes": peak,
        "device": str(device),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def bootstrap_ci(hits: Sequence[int], n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of a mean of 0/1 outcomes."""
    t = torch.tensor(hits, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(t), (n_boot, len(t)), generator=g)
    means = t[idx].mean(1).sort().values
    return float(means[int(0.025 * n_boot)]), float(means[int(0.975 * n_boot) - 1])
