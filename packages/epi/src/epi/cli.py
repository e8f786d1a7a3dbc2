"""``epi`` command line: ``epi train``, ``epi drift``, ``epi demo``. Thin: parses flags, calls the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from papercore.cli import (
    ModelOpt,
    OutputOpt,
    SeedOpt,
    VerboseOpt,
    clean_errors,
    console,
    out,
    setup_logging,
)

app = typer.Typer(
    help="Evolving Parameter Isolation (EPI) for supervised fine-tuning.", no_args_is_help=True
)

DataOpt = Annotated[
    Path, typer.Option("--data", "-d", help="JSONL rows: prompt+completion or text.")
]
TaskFieldOpt = Annotated[
    str | None,
    typer.Option("--task-field", help="Row field naming the task (enables per-task masks)."),
]


def _model_and_tokenizer(model: str):
    from papercore.models import load_model, load_tokenizer

    tok = load_tokenizer(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return load_model(model, device="cuda" if _cuda() else "cpu", dtype="auto"), tok


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@app.command()
@clean_errors
def train(
    model: ModelOpt,
    data: DataOpt,
    output: OutputOpt = Path("epi-out"),
    task_field: TaskFieldOpt = None,
    isolation_ratio: Annotated[
        float, typer.Option(help="p: fraction of elements isolated.")
    ] = 0.01,
    update_interval: Annotated[
        int, typer.Option(help="Optimizer steps between mask rebuilds.")
    ] = 100,
    warmup_steps: Annotated[int | None, typer.Option(help="Steps before the first mask.")] = None,
    mode: Annotated[str, typer.Option(help="freeze or freeze_other_tasks.")] = "freeze",
    static: Annotated[
        bool, typer.Option("--static", help="Static isolation (mask built once).")
    ] = False,
    random_mask: Annotated[bool, typer.Option("--random", help="Random-mask control.")] = False,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train a LoRA adapter (needs epi[peft]).")
    ] = False,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Per-device batch size.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-5,
    max_length: Annotated[int, typer.Option(help="Truncate examples to this many tokens.")] = 256,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune MODEL on DATA with evolving (or static / random) parameter isolation."""
    setup_logging(verbose)
    from transformers import Trainer

    from epi.callback import EPICallback
    from epi.config import EPIConfig
    from epi.isolation import EvolvingIsolation, RandomIsolation, StaticIsolation
    from epi.sft_data import load_sft_jsonl, pad_collator
    from epi.trainer import EPITrainer
    from papercore.seeding import seed_everything
    from papercore.trainer_args import training_args

    if static and random_mask:
        raise typer.BadParameter("--static and --random exclude each other")
    seed_everything(seed)
    per_task = task_field is not None
    cfg = EPIConfig(
        isolation_ratio=isolation_ratio,
        update_interval=update_interval,
        warmup_steps=warmup_steps,
        mode=mode,  # type: ignore[arg-type]
        track="per_task" if per_task else "pooled",
        seed=seed,
    )
    m, tok = _model_and_tokenizer(model)
    if lora:
        try:
            import peft
        except ImportError as e:
            raise ImportError("--lora needs peft: pip install 'epi[peft]'") from e
        m = peft.get_peft_model(m, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    ds, tasks = load_sft_jsonl(data, tok, task_field=task_field, max_length=max_length)
    cls = StaticIsolation if static else RandomIsolation if random_mask else EvolvingIsolation
    args = training_args(
        output_dir=str(output),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=lr,
        max_steps=max_steps,
        save_strategy="no",
        logging_steps=max(1, max_steps // 10),
        seed=seed,
        remove_unused_columns=False,
    )
    collate = pad_collator(tok.pad_token_id)
    if per_task:
        trainer = EPITrainer(
            model=m,
            args=args,
            train_dataset=ds,
            data_collator=collate,
            epi_config=cfg,
            isolation_cls=cls,
        )
        iso_of = lambda: trainer.epi_isolation  # noqa: E731
    else:
        cb = EPICallback(cfg, isolation_cls=cls)
        trainer = Trainer(
            model=m, args=args, train_dataset=ds, data_collator=collate, callbacks=[cb]
        )
        iso_of = lambda: cb.isolation  # noqa: E731
    trainer.train()
    iso = iso_of()
    out.print(
        f"EPI state: {iso.tracker.numel} tracked elements, {len(iso.tracker.tasks)} task buffer(s), "
        f"estimated {iso.tracker.state_bytes / 1e9:.4f} GB (limit max_state_gb={cfg.max_state_gb})"
    )
    output.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(output))
    tok.save_pretrained(str(output))
    import torch

    torch.save(iso.state_dict(), output / "epi_state.pt")
    summary = {"tasks": tasks, "drift": iso.history, "final_density": iso.mask.density()}
    (output / "epi_drift.json").write_text(json.dumps(summary, indent=1))
    out.print(
        f"trained {max_steps} steps; {len(iso.history)} mask update(s); isolated density "
        f"{iso.mask.density():.4f}; saved to {output}"
    )


@app.command()
@clean_errors
def drift(
    model: ModelOpt,
    data: DataOpt,
    output: OutputOpt = Path("epi-drift.json"),
    isolation_ratio: Annotated[float, typer.Option(help="p of the top-p sets.")] = 0.01,
    interval: Annotated[int, typer.Option(help="Steps between snapshots of the top-p set.")] = 25,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Per-device batch size.")] = 8,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-5,
    max_length: Annotated[int, typer.Option(help="Truncate examples to this many tokens.")] = 256,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Measure importance drift during plain SFT: Jaccard of successive top-p sets (nothing is frozen)."""
    setup_logging(verbose)
    from transformers import Trainer

    from epi.config import EPIConfig
    from epi.drift import DriftCallback
    from epi.sft_data import load_sft_jsonl, pad_collator
    from papercore.seeding import seed_everything
    from papercore.trainer_args import training_args

    seed_everything(seed)
    cfg = EPIConfig(isolation_ratio=isolation_ratio, update_interval=interval)
    m, tok = _model_and_tokenizer(model)
    ds, _ = load_sft_jsonl(data, tok, max_length=max_length)
    cb = DriftCallback(cfg)
    args = training_args(
        output_dir=str(output.parent / ".epi-drift-run"),
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        max_steps=max_steps,
        save_strategy="no",
        logging_steps=max_steps + 1,
        seed=seed,
        disable_tqdm=True,
    )
    Trainer(
        model=m,
        args=args,
        train_dataset=ds,
        data_collator=pad_collator(tok.pad_token_id),
        callbacks=[cb],
    ).train()
    output.write_text(
        json.dumps({"isolation_ratio": isolation_ratio, "records": cb.records}, indent=1)
    )
    for r in cb.records:
        out.print(
            f"step {int(r['step']):>6}  jaccard(prev) {r['jaccard_prev']:.3f}  jaccard(first) {r['jaccard_first']:.3f}"
        )
    console.print(f"wrote {output}")


@app.command()
@clean_errors
def demo(verbose: VerboseOpt = False) -> None:
    """Sequential A → B lookup tasks on a tiny MLP: EPI vs static isolation (~10 s on CPU)."""
    setup_logging(verbose)
    from epi.demo import run_demo

    r = run_demo()
    out.print(
        f"{r.method} {r.value:.3f} vs {r.baseline} {r.baseline_value:.3f} ({r.metric}); ratio {r.ratio:.2f}; "
        f"{r.floor_name} {r.floor:.3f}; kind: {r.kind}"
    )
    for m, v in r.details["results"].items():
        out.print(
            f"  {m:>7}: old-task acc during B {v['mean_old_acc_during_b']:.3f}, new-task acc {v['final_new_acc']:.3f}"
        )
