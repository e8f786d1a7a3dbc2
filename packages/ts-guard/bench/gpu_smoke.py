"""Real-scale GRPO of TS-Guard (GPU): the released settings through TRL, then a step-level evaluation.

Released run (ToolSafe, verl): Qwen2.5-7B-Instruct, GRPO, lr 1e-6, 16 rollouts per prompt, KL-loss coefficient
0.001, max prompt 4096 (longer prompts dropped), max response 1024, 10 epochs, uniform reward weights
(0.33/0.33/0.34), train batch 256 prompts. Here: TRL GRPOTrainer (+ vLLM rollouts with --vllm).

    python bench/gpu_smoke.py --model /models/Qwen2.5-7B-Instruct --train train_steps.jsonl \
        --eval agentdojo_traj_steps.jsonl --out runs/ts-guard --max-steps 20 [--vllm]

Steps files: the JSONL of `ts-guard --help` (user_request, tools, history, candidate, gt_mur, gt_pi, gt_rating).
``--max-steps 20`` is a smoke run; drop it (-1) for the full 10 epochs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from papercore.machine import bench_parser, machine_info

p = bench_parser(__doc__, Path("runs/ts-guard/gpu_smoke.json"))
p.add_argument("--model", required=True, help="local model directory (e.g. Qwen2.5-7B-Instruct)")
p.add_argument("--train", type=Path, required=True)
p.add_argument("--eval", type=Path, default=None)
p.add_argument("--run-dir", type=Path, default=Path("runs/ts-guard"))
p.add_argument("--weights", default="uniform")
p.add_argument("--max-steps", type=int, default=20)
p.add_argument(
    "--batch-prompts", type=int, default=16, help="prompts per device step (released: 256 global)"
)
p.add_argument("--vllm", action="store_true", help="vLLM colocated rollouts")
args = p.parse_args()

import torch  # noqa: E402

if not torch.cuda.is_available():
    sys.exit("gpu_smoke.py needs a CUDA GPU (use the tests / benches on CPU)")

from papercore.io import read_jsonl  # noqa: E402
from ts_guard import HFGuard, evaluate_guard, steps_to_dataset, train_grpo  # noqa: E402
from ts_guard.cli import _row_input  # noqa: E402
from ts_guard.data import GuardSample, StepLabel  # noqa: E402


def samples(path: Path) -> list[GuardSample]:
    return [
        GuardSample(
            _row_input(r), StepLabel(r["gt_mur"], r["gt_pi"], r["gt_rating"]), r.get("source", "")
        )
        for r in read_jsonl(path)
    ]


t0 = time.time()
stats: dict[str, int] = {}
from papercore.models import load_tokenizer  # noqa: E402

tok = load_tokenizer(args.model)
ds = steps_to_dataset(samples(args.train), tokenizer=tok, max_prompt_tokens=4096, stats=stats)
G = 16
trainer = train_grpo(
    args.model,
    ds,
    output_dir=args.run_dir,
    weights=args.weights,
    tokenizer=tok,
    real_scale=True,  # lr 1e-6, num_generations 16, beta 0.001, max_completion_length 1024, 10 epochs
    per_device_train_batch_size=args.batch_prompts * G // 4,
    gradient_accumulation_steps=4,
    max_steps=args.max_steps,
    logging_steps=1,
    use_vllm=args.vllm,
    vllm_mode="colocate" if args.vllm else "server",
    gradient_checkpointing=True,
)
result = {
    "machine": machine_info(),
    "model": args.model,
    "train": str(args.train),
    "data_stats": stats,
    "log": trainer.state.log_history,
}
if args.eval is not None:
    guard = HFGuard(str(args.run_dir), official=True)
    result["eval"] = evaluate_guard(guard, samples(args.eval))
result["seconds"] = time.time() - t0
args.out.parent.mkdir(parents=True, exist_ok=True)
args.out.write_text(json.dumps(result, indent=2, default=str))
print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=2, default=str))
