"""Real-scale smoke run (GPU, vLLM): E-GRM vs always-CoT + vote vs direct-only on RewardBench / RM-Bench.

Not run on the CPU machine this package was developed on (vLLM's PyPI wheel needs CUDA). Everything is
local: the judge model directory (e.g. Qwen2.5-7B-Instruct), the benchmark files (RewardBench parquet,
RM-Bench JSON) and optionally a trained PathScorer directory. One line per method, with ratios to
always-CoT + vote measured in the same run, and a JSON of results.

    python bench/gpu_smoke.py --model /models/Qwen2.5-7B-Instruct \\
        --rewardbench /data/reward-bench/filtered.parquet --limit 500 [--scorer runs/scorer] \\
        [--rmbench /data/rm-bench/total_dataset.json] [--tensor-parallel-size 2]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from egrm_reward.data import evaluate_rewardbench, evaluate_rmbench, load_rewardbench, load_rmbench
from egrm_reward.pipeline import EfficientGRM, EGRMConfig
from egrm_reward.scorer import PathScorer
from papercore.generation import make_backend
from papercore.machine import bench_parser, machine_info

HERE = Path(__file__).parent


def main() -> None:
    p = bench_parser(__doc__, HERE / "results" / "gpu_smoke.json")
    p.add_argument("--model", required=True, help="local judge model directory")
    p.add_argument("--rewardbench", type=Path, help="RewardBench parquet (local)")
    p.add_argument("--rmbench", type=Path, help="RM-Bench JSON (local)")
    p.add_argument(
        "--scorer", type=Path, help="trained PathScorer directory (else LONG routes vote)"
    )
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--tau", type=float, default=0.8)
    p.add_argument("--cot-tokens", type=int, default=1024)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.rewardbench and not args.rmbench:
        p.error("give --rewardbench and/or --rmbench")
    logging.basicConfig(level=logging.INFO)
    backend = make_backend(
        "vllm",
        model=args.model,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        seed=args.seed,
    )
    scorer = PathScorer.from_pretrained(args.scorer) if args.scorer else None
    agg = "argmax" if scorer else "vote"
    methods = {
        "direct-only": EGRMConfig(never_cot=True, seed=args.seed),
        "always-CoT + vote": EGRMConfig(
            always_cot=True, aggregation="vote", cot_max_new_tokens=args.cot_tokens, seed=args.seed
        ),
        "E-GRM": EGRMConfig(
            tau=args.tau, aggregation=agg, cot_max_new_tokens=args.cot_tokens, seed=args.seed
        ),
    }
    benches = []
    if args.rewardbench:
        benches.append(
            (
                "rewardbench",
                load_rewardbench(args.rewardbench)[: args.limit],
                evaluate_rewardbench,
                "overall",
            )
        )
    if args.rmbench:
        benches.append(
            (
                "rm-bench",
                load_rmbench(args.rmbench)[: max(1, args.limit // 9)],
                evaluate_rmbench,
                "avg",
            )
        )
    report = {
        "machine": machine_info(),
        "model": args.model,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": [],
    }
    for bname, data, evaluate, key in benches:
        rows = {}
        for mname, cfg in methods.items():
            grm = EfficientGRM(backend, scorer if mname == "E-GRM" else None, cfg)
            t0 = time.perf_counter()
            res = evaluate(grm, data, seed=args.seed, batch_size=256)
            wall = time.perf_counter() - t0
            results = res["results"]
            rows[mname] = {
                "score": res[key],
                "trigger_rate": sum(r.route.value == "long" for r in results) / len(results),
                "generated_tokens": sum(r.cost.generated_tokens for r in results),
                "wall_s": wall,
            }
        base = rows["always-CoT + vote"]
        for mname, r in rows.items():
            print(
                f"{bname:12s} {mname:18s} score {r['score']:.4f}  trigger {r['trigger_rate']:.2f}  "
                f"tokens ×{r['generated_tokens'] / base['generated_tokens']:.2f}  wall {r['wall_s']:.0f}s "
                f"(×{r['wall_s'] / base['wall_s']:.2f}, latency saving {1 - r['wall_s'] / base['wall_s']:.0%})"
            )
        report["rows"].append({"bench": bname, "methods": rows})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
