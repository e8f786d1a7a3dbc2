"""Real-scale smoke run (GPU, vLLM): SRM with LoRA side branches on RM-Bench / RewardBench.

Not run on the CPU machine this package was developed on (vLLM's PyPI wheel needs CUDA). Everything is local:
the branch base model (e.g. Qwen2.5-1.5B-Instruct), one LoRA adapter folder per dimension (``srm train-branch``
outputs), a trained SRM folder (``srm train-rm`` output; e.g. a Qwen2.5-7B reward head) and the benchmark
files. All LoRA branches are generated in one vLLM engine with one ``LoRARequest`` per prompt; the RM runs
with transformers. Prints accuracy per level / section, leave-one-branch-out deltas and the latency per pair,
and writes a JSON of results.

    python bench/gpu_smoke.py --base /models/Qwen2.5-1.5B-Instruct --branches runs/branches \\
        --srm runs/rm --rmbench /data/rm-bench/total_dataset.json [--rewardbench filtered.parquet] --limit 300
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from papercore.machine import bench_parser, machine_info

    p = bench_parser(__doc__, HERE / "results" / "gpu_smoke.json")
    p.add_argument("--base", required=True, help="local base model directory of the LoRA branches")
    p.add_argument(
        "--branches", type=Path, required=True, help="folder of branch folders (adapters)"
    )
    p.add_argument(
        "--srm", type=Path, required=True, help="trained SRM folder (srm.json + RM weights)"
    )
    p.add_argument("--rmbench", type=Path)
    p.add_argument("--rewardbench", type=Path)
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--max-lora-rank", type=int, default=16)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = p.parse_args()
    if not args.rmbench and not args.rewardbench:
        p.error("give --rmbench and/or --rewardbench")
    logging.basicConfig(level=logging.INFO)

    import torch

    from papercore.generation.vllm import VLLMBackend
    from srm_reward import SideBranchModel, StructuralRewardModel
    from srm_reward.branch import BRANCH_FILE
    from srm_reward.data import load_rewardbench, load_rm_bench, rewardbench_scores, rm_bench_scores
    from srm_reward.dims import Dimension
    from srm_reward.experiment import pair_accuracy

    folders = sorted(d for d in args.branches.iterdir() if (d / BRANCH_FILE).is_file())
    metas = {d.name: json.loads((d / BRANCH_FILE).read_text()) for d in folders}
    backend = VLLMBackend(
        args.base,
        lora_adapters={m["adapter"]: str(d) for d, m in zip(folders, metas.values(), strict=False)},
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_lora_rank=args.max_lora_rank,
    )
    branches = [
        SideBranchModel.lora(
            Dimension(**m["dimension"]),
            backend,
            m["adapter"],
            max_new_tokens=m["max_new_tokens"],
            stop=m["stop"],
        )
        for m in metas.values()
    ]
    trained = json.loads((args.srm / "srm.json").read_text())["branches"]
    by_name = {b.name: b for b in branches}
    srm = StructuralRewardModel.from_pretrained(
        args.srm, branches=[by_name[n] for n in trained if n in by_name]
    )
    if torch.cuda.is_available():
        srm.reward_model.to("cuda")
    results: dict = {"machine": machine_info(), "base": args.base, "srm": str(args.srm)}
    sets = []
    if args.rmbench:
        sets.append(("rm-bench", load_rm_bench(args.rmbench)[: args.limit * 9], rm_bench_scores))
    if args.rewardbench:
        sets.append(
            ("rewardbench", load_rewardbench(args.rewardbench)[: args.limit], rewardbench_scores)
        )
    for name, rows, scorer in sets:
        t0 = time.perf_counter()
        prompts = [r["prompt"] for r in rows]
        resp = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
        aux = srm.aux(prompts + prompts, resp)
        s = srm.score_texts(srm.render(prompts + prompts, resp, aux))
        n = len(rows)
        correct = [bool(s[i] > s[n + i]) for i in range(n)]
        res = scorer(rows, correct)
        res["ms_per_pair"] = 1000 * (time.perf_counter() - t0) / n
        res["leave_one_out"] = {
            b: pair_accuracy(srm, rows, ablate=[b], aux=aux)["all"] for b in srm.branch_names
        }
        results[name] = res
        print(name, json.dumps(res, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
