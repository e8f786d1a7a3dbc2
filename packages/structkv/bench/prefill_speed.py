"""Prefill wall time and peak memory: full vs FastKV vs StructKV on a random-init 12-layer Llama.

Each (method, length, repeat) runs in a fresh subprocess so that peak RSS is per method; repeats are
interleaved across methods so machine load hits every method alike. Prints one line per method and
length with the ratio to full prefill measured in the same run; writes results/prefill_speed.json.

    uv run --locked python packages/structkv/bench/prefill_speed.py --lengths 4096,8192 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from papercore.machine import machine_info

RESULTS = Path(__file__).parent / "results"
METHODS = ("full", "fastkv", "structkv")


def _child(
    method: str, n: int, threads: int, layers: int, hidden: int, kv_budget: float, budget: float
) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from structkv import prefill
    from structkv.evaluate import build_press

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1024,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=2,
        max_position_embeddings=32768,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    ids = torch.randint(0, 1024, (1, n), generator=torch.Generator().manual_seed(1))
    press = (
        None if method == "full" else build_press(method, kv_budget, budget, layers, window_size=32)
    )
    prefill(model, ids[:, :512], press)  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    res = prefill(model, ids, press)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "length": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak / 1024,
        "rss_growth_mb": (peak - rss0) / 1024,
        "prefill_cost": res.stats["prefill_cost"],
        "kv_fraction": res.stats["kv_fraction"],
        "pivot_layer": res.stats.get("pivot_layer"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lengths", default="4096,8192")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--kv-budget", type=float, default=0.1)
    p.add_argument("--prefill-budget", type=float, default=0.6)
    p.add_argument("--child", nargs=2, metavar=("METHOD", "N"))
    a = p.parse_args()
    if a.child:
        r = _child(
            a.child[0],
            int(a.child[1]),
            a.threads,
            a.layers,
            a.hidden,
            a.kv_budget,
            a.prefill_budget,
        )
        print(json.dumps(r))
        return
    t_start = time.time()
    runs: list[dict] = []
    lengths = [int(x) for x in a.lengths.split(",")]
    for n in lengths:
        for rep in range(a.repeats):
            for m in METHODS:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    m,
                    str(n),
                    "--threads",
                    str(a.threads),
                    "--layers",
                    str(a.layers),
                    "--hidden",
                    str(a.hidden),
                    "--kv-budget",
                    str(a.kv_budget),
                    "--prefill-budget",
                    str(a.prefill_budget),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["repeat"] = rep
                runs.append(r)
                print(
                    f"  n={n} rep={rep} {m:9s} wall={r['wall_s']:.2f}s peak={r['peak_rss_mb']:.0f}MB",
                    flush=True,
                )
    summary = []
    for n in lengths:
        best = {
            m: min(
                (r for r in runs if r["length"] == n and r["method"] == m),
                key=lambda r: r["wall_s"],
            )
            for m in METHODS
        }
        full = best["full"]
        for m in METHODS:
            b = best[m]
            row = {
                "length": n,
                "method": m,
                "wall_s": round(b["wall_s"], 3),
                "wall_ratio": round(b["wall_s"] / full["wall_s"], 3),
                "cpu_s": round(
                    min(r["cpu_s"] for r in runs if r["length"] == n and r["method"] == m), 3
                ),
                "peak_rss_mb": round(b["peak_rss_mb"], 1),
                "peak_ratio": round(b["peak_rss_mb"] / full["peak_rss_mb"], 3),
                "rss_growth_mb": round(b["rss_growth_mb"], 1),
                "prefill_cost": round(b["prefill_cost"], 3),
                "kv_fraction": round(b["kv_fraction"], 3),
                "pivot_layer": b["pivot_layer"],
            }
            row["cpu_ratio"] = round(
                row["cpu_s"]
                / min(r["cpu_s"] for r in runs if r["length"] == n and r["method"] == "full"),
                3,
            )
            summary.append(row)
            print(
                f"n={n:6d} {m:9s} wall {row['wall_s']:7.2f}s ({row['wall_ratio']:.2f}x full)  "
                f"cpu {row['cpu_s']:7.2f}s ({row['cpu_ratio']:.2f}x)  "
                f"peak RSS {row['peak_rss_mb']:7.0f}MB ({row['peak_ratio']:.2f}x)  "
                f"prefill cost {row['prefill_cost']:.2f}  KV {row['kv_fraction']:.2f}  pivot {row['pivot_layer']}"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": machine_info(a.threads),
        "model": f"random-init Llama, {a.layers} layers, hidden {a.hidden}, GQA 2 KV heads, fp32, sdpa",
        "kv_budget": a.kv_budget,
        "prefill_budget": a.prefill_budget,
        "repeats": a.repeats,
        "total_seconds": round(time.time() - t_start, 1),
    }
    (RESULTS / "prefill_speed.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1)
    )
    print(f"total {meta['total_seconds']}s")


if __name__ == "__main__":
    main()
