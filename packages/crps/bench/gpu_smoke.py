"""Real-scale CRPS run (GPU): explorer on vLLM from a local path, analyst on an OpenAI-compatible
server, then SFT of a student with the paper's settings. Resumable: rerun the same command.

Settings (spec 2.1 / 2.7, released configs/default.yaml): MCTS c=1.4, depth 16, 3 children,
10 rollouts, temperature 0.7; K=10 pairs, 70 % hard; analysis temperature 0.7 / 1024 tokens;
synthesis temperature 0 / 2048 tokens; SFT lr 2e-5 cosine, warm-up 3 %, 3 epochs, max length 2048.

    # analyst server, e.g.: vllm serve /models/Qwen2.5-72B-Instruct --port 8000 --tensor-parallel-size 4
    python bench/gpu_smoke.py --problems gsm8k_math_train.jsonl \\
        --explorer /models/Qwen2.5-Math-7B-Instruct \\
        --analyst-url http://127.0.0.1:8000/v1 --analyst-model /models/Qwen2.5-72B-Instruct \\
        --student /models/deepseek-math-7b-base --workdir runs/crps --limit 200

Problems JSONL: ``{"id", "problem", "gold"}`` per line (GSM8K answers after "####", MATH boxed answers).
Nothing is downloaded: every model comes from a local path or a running server.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--problems", type=Path, required=True)
    p.add_argument("--explorer", required=True, help="local path of the explorer model (vLLM)")
    p.add_argument("--analyst-url", required=True)
    p.add_argument("--analyst-model", required=True)
    p.add_argument("--student", default=None, help="local path of the student; omit to skip SFT")
    p.add_argument("--workdir", type=Path, default=Path("runs/crps"))
    p.add_argument("--limit", type=int, default=None, help="first N problems only")
    p.add_argument("--template", default="crps")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from crps_synth import pipeline as stages
    from crps_synth.critique import ContrastiveAnalyzer
    from crps_synth.llm import BackendChatLLM, BackendStepGenerator
    from crps_synth.mcts import MCTS, MCTSConfig
    from crps_synth.sampling import ContrastivePairSampler
    from crps_synth.synthesize import PathSynthesizer
    from crps_synth.verify import MathVerifier
    from papercore.generation import make_backend
    from papercore.io import read_table

    problems = read_table(args.problems)[: args.limit]
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    verifier = MathVerifier()
    explorer = BackendStepGenerator(
        make_backend("vllm", model=args.explorer), rollout_max_tokens=2048
    )
    analyst = BackendChatLLM(
        make_backend(
            "openai",
            base_url=args.analyst_url,
            model=args.analyst_model,
            max_concurrency=args.workers,
        )
    )
    stats = {
        "explore": stages.explore(
            problems, MCTS(explorer, verifier, MCTSConfig()), wd / "explore.jsonl", seed=args.seed
        ),
        "pair": stages.pair(
            wd / "explore.jsonl", ContrastivePairSampler(10, 0.7, args.seed), wd / "pair.jsonl"
        ),
        "critique": stages.critique(
            wd / "pair.jsonl",
            ContrastiveAnalyzer(analyst),
            wd / "critique.jsonl",
            max_workers=args.workers,
        ),
        "synthesize": stages.synthesize(
            wd / "critique.jsonl",
            PathSynthesizer(analyst, verifier),
            wd / "synthesize.jsonl",
            max_workers=args.workers,
        ),
    }
    stats["export"], report = stages.export(
        wd / "synthesize.jsonl", wd / "sft.jsonl", template=args.template
    )
    (wd / "stats.json").write_text(json.dumps({k: v.to_dict() for k, v in stats.items()}, indent=2))
    print(f"{report.n_unique} unique verified examples → {wd / 'sft.jsonl'}")
    if args.student:
        from crps_synth.export import rows_to_dataset
        from crps_synth.train import train_sft
        from papercore.io import read_jsonl
        from papercore.models import load_tokenizer

        ds = rows_to_dataset(read_jsonl(wd / "sft.jsonl"))
        train_sft(
            ds,
            args.student,
            load_tokenizer(args.student),
            wd / "student",
            per_device_train_batch_size=4,
            gradient_accumulation_steps=32,
        )  # effective batch 128
        print(f"student saved to {wd / 'student'}")


if __name__ == "__main__":
    main()
