"""Real-scale EPI run on a GPU (spec §4.4): full fine-tuning of a local 7–9B model on a JSONL task mixture
with per-task evolving isolation through TRL's SFTTrainer (``EPISFTTrainer``).

Not run on CPU. Data: JSONL rows ``{"prompt", "completion", "task"}`` (e.g. GSM8K, CodeAlpaca, LogiQA,
Alpaca, UltraChat converted locally). Settings follow the paper's scale: p = 1 %, update interval 100,
lr 2e-5, 3 epochs; pooled tracking or bf16 state keeps the EMA memory bounded (7B × 5 tasks × 4 B = 140 GB
per task: the memory check raises above max_state_gb=80; default here: pooled). Evaluate the saved model with your task evaluators afterwards.

    python packages/epi/bench/gpu_smoke.py --model /models/Llama-3-8B --data mix.jsonl --out runs/epi
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="local model directory")
    p.add_argument("--data", type=Path, required=True, help="JSONL with prompt, completion, task")
    p.add_argument("--out", type=Path, default=Path("runs/epi"))
    p.add_argument("--ratio", type=float, default=0.01)
    p.add_argument("--interval", type=int, default=100)
    p.add_argument("--track", choices=["pooled", "per_task"], default="pooled")
    p.add_argument("--mode", choices=["freeze", "freeze_other_tasks"], default="freeze")
    p.add_argument("--static", action="store_true", help="CPI-FT-style static mask instead of EPI")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--max-length", type=int, default=2048)
    args = p.parse_args()

    import datasets
    import torch
    from trl import SFTConfig

    from epi import EPIConfig, EPISFTTrainer, EvolvingIsolation, StaticIsolation
    from papercore.io import read_jsonl
    from papercore.models import load_model, load_tokenizer
    from papercore.trainer_args import training_args

    rows = read_jsonl(args.data, required=("prompt", "completion", "task"))
    tasks = {t: i for i, t in enumerate(sorted({str(r["task"]) for r in rows}))}
    ds = datasets.Dataset.from_list(
        [
            {"prompt": r["prompt"], "completion": r["completion"], "task_id": tasks[str(r["task"])]}
            for r in rows
        ]
    )
    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.bfloat16, device="cuda")
    cfg = EPIConfig(
        isolation_ratio=args.ratio,
        update_interval=args.interval,
        track=args.track,
        mode=args.mode if args.track == "per_task" else "freeze",
        state_dtype=torch.bfloat16,
        include=[r"layers\.\d+\.(self_attn|mlp)\."],
    )
    sft = training_args(
        SFTConfig,
        output_dir=str(args.out),
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        gradient_checkpointing=True,
        logging_steps=10,
        save_steps=500,
    )
    trainer = EPISFTTrainer(
        model=model,
        args=sft,
        train_dataset=ds,
        processing_class=tok,
        epi_config=cfg,
        isolation_cls=StaticIsolation if args.static else EvolvingIsolation,
    )
    trainer.train()
    trainer.save_model(str(args.out / "final"))
    drift = [r for r in trainer.state.log_history if "epi/jaccard" in r]
    print(f"tasks {tasks}; {len(drift)} mask updates; last {drift[-1] if drift else None}")


if __name__ == "__main__":
    main()
