"""``structkv`` demo: prefill wall time of StructKV (10% KV, 60% compute) vs full prefill, same model, same run.

A random-init 8-layer Llama (hidden 256) prefills 2,048 tokens on one torch thread; each method runs
five times interleaved and the fastest run counts. Time is CPU time of this process (``time.process_time``):
on one thread it equals wall time on an idle machine and, unlike wall time, is not inflated by other jobs. The realised prefill cost, KV fraction and pivot layer are reported beside
the time, and FastKV at the same budgets is measured too. Random weights say nothing about accuracy:
the accuracy comparison lives in ``bench/``.
"""

from __future__ import annotations

import time

from papercore.demo import DemoResult
from papercore.seeding import torch_threads

N_TOKENS, LAYERS, HIDDEN, REPEATS = 2048, 8, 256, 5


def run_demo() -> DemoResult:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from structkv.evaluate import build_press
    from structkv.generation import prefill

    t_start = time.perf_counter()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1024,
        hidden_size=HIDDEN,
        intermediate_size=704,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 1024, (1, N_TOKENS), generator=torch.Generator().manual_seed(1))
    methods = ("full", "fastkv", "structkv")
    best = dict.fromkeys(methods, float("inf"))
    stats: dict[str, dict] = {}
    with torch_threads(1):
        prefill(model, ids[:, :256])  # warm-up
        for _ in range(REPEATS):
            for m in methods:
                press = None if m == "full" else build_press(m, 0.1, 0.6, LAYERS, window_size=32)
                t0 = time.process_time()
                res = prefill(model, ids, press)
                best[m] = min(best[m], time.process_time() - t0)
                stats[m] = res.stats
    details = {
        f"{m}_{k}": (round(v, 4) if isinstance(v, float) else v)
        for m in methods
        for k, v in (
            ("cpu_s", best[m]),
            ("prefill_cost", stats[m]["prefill_cost"]),
            ("kv_fraction", stats[m]["kv_fraction"]),
            ("pivot_layer", stats[m]["pivot_layer"]),
        )
    }
    details["time_ratio_structkv_vs_full"] = round(best["structkv"] / best["full"], 3)
    details["time_ratio_fastkv_vs_full"] = round(best["fastkv"] / best["full"], 3)
    details["setup"] = (
        f"random-init Llama {LAYERS}x{HIDDEN}, {N_TOKENS} tokens, 1 CPU thread, process time, best of {REPEATS}"
    )
    return DemoResult(
        method="structkv (KV 10%, prefill budget 0.6)",
        baseline="full prefill",
        metric="prefill CPU time (s)",
        value=round(best["structkv"], 4),
        baseline_value=round(best["full"], 4),
        higher_is_better=False,
        details=details,
        package="structkv",
        seconds=round(time.perf_counter() - t_start, 1),
    )
