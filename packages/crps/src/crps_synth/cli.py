"""The ``crps-synth`` command line: ``explore → pair → critique → synthesize → export → train``, and ``demo``.

Every stage reads the previous stage's JSONL and appends to its own output; rerunning a stage
resumes by problem id. Models load from local paths (transformers backend) or are reached through an
OpenAI-compatible server (``--backend openai --base-url http://host:port/v1 --model NAME``); vLLM is
``--backend vllm`` (GPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from papercore.cli import (
    OutputOpt,
    SeedOpt,
    VerboseOpt,
    clean_errors,
    make_app,
    out,
    setup_logging,
    status,
)

app = make_app(
    "crps-synth",
    "CRPS: contrastive reasoning-path synthesis from MCTS trajectories (explore, pair, critique, "
    "synthesize, export, train).",
)

InArg = Annotated[Path, typer.Argument(help="Input JSONL (the previous stage's output).")]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="transformers (local path), openai (server) or vllm.")
]
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Local model path, or the server's model name.")
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."),
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Concurrent analyst calls.")]


def _backend(backend: str, model: str, base_url: str | None):
    from papercore.generation import make_backend

    if backend.lower() in ("openai", "server", "http"):
        if not base_url:
            raise typer.BadParameter("--backend openai needs --base-url")
        return make_backend("openai", base_url=base_url, model=model)
    return make_backend(backend, model=model)


def _print_stats(stats) -> None:
    out.print_json(json.dumps(stats.to_dict()))


@app.command()
@clean_errors
def explore(
    problems: Annotated[Path, typer.Argument(help="Problems JSONL/JSON/CSV: id, problem, gold.")],
    model: ModelOpt,
    output: OutputOpt = Path("explore.jsonl"),
    backend: BackendOpt = "transformers",
    base_url: BaseUrlOpt = None,
    rollouts: Annotated[int, typer.Option("--rollouts", help="MCTS rollouts per problem.")] = 10,
    c_puct: Annotated[float, typer.Option("--c-puct", help="UCT exploration constant.")] = 1.4,
    max_depth: Annotated[int, typer.Option("--max-depth", help="Maximum steps per path.")] = 16,
    width: Annotated[int, typer.Option("--width", help="Children per expansion.")] = 3,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Explorer temperature.")
    ] = 0.7,
    official_compat: Annotated[
        bool,
        typer.Option("--official-compat", help="Released behaviour: prefix-only trajectories."),
    ] = False,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Phase 1: MCTS over step-wise solutions; one row of trajectories per problem."""
    from crps_synth import pipeline
    from crps_synth.llm import BackendStepGenerator
    from crps_synth.mcts import MCTS, MCTSConfig
    from crps_synth.verify import MathVerifier
    from papercore.io import read_table

    setup_logging(verbose)
    cfg = MCTSConfig(c_puct, max_depth, width, rollouts, temperature, official_compat)
    rows = pipeline.normalize_problems(
        read_table(problems)
    )  # bad input fails before loading a model
    with status(f"loading explorer {model}"):
        gen = BackendStepGenerator(_backend(backend, model, base_url))
    stats = pipeline.explore(rows, MCTS(gen, MathVerifier(), cfg), output, seed=seed)
    _print_stats(stats)


@app.command()
@clean_errors
def pair(
    explored: InArg,
    output: OutputOpt = Path("pairs.jsonl"),
    k: Annotated[int, typer.Option("--k", help="Pairs per problem.")] = 10,
    hard_ratio: Annotated[
        float, typer.Option("--hard-ratio", help="Share of hard negatives.")
    ] = 0.7,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Stratify trajectories and sample contrast pairs (hard ∝ visit count)."""
    from crps_synth import pipeline
    from crps_synth.sampling import ContrastivePairSampler

    setup_logging(verbose)
    _print_stats(pipeline.pair(explored, ContrastivePairSampler(k, hard_ratio, seed), output))


@app.command()
@clean_errors
def critique(
    paired: InArg,
    model: ModelOpt,
    output: OutputOpt = Path("critiques.jsonl"),
    backend: BackendOpt = "openai",
    base_url: BaseUrlOpt = None,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.7,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 1024,
    max_retries: Annotated[int, typer.Option("--max-retries")] = 2,
    max_failure_rate: Annotated[float, typer.Option("--max-failure-rate")] = 0.5,
    workers: WorkersOpt = 4,
    verbose: VerboseOpt = False,
) -> None:
    """Phase 2a: the analyst's structured critique of every pair."""
    from crps_synth import pipeline
    from crps_synth.critique import ContrastiveAnalyzer
    from crps_synth.llm import BackendChatLLM

    setup_logging(verbose)
    llm = BackendChatLLM(_backend(backend, model, base_url))
    analyzer = ContrastiveAnalyzer(
        llm,
        temperature,
        max_tokens,
        max_retries=max_retries,
        max_parse_failure_rate=max_failure_rate,
    )
    _print_stats(pipeline.critique(paired, analyzer, output, max_workers=workers))


@app.command()
@clean_errors
def synthesize(
    critiqued: InArg,
    model: ModelOpt,
    output: OutputOpt = Path("synthesized.jsonl"),
    backend: BackendOpt = "openai",
    base_url: BaseUrlOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 2048,
    workers: WorkersOpt = 4,
    verbose: VerboseOpt = False,
) -> None:
    """Phase 2b: write a new solution per critique and verify it against the gold answer."""
    from crps_synth import pipeline
    from crps_synth.llm import BackendChatLLM
    from crps_synth.synthesize import PathSynthesizer
    from crps_synth.verify import MathVerifier

    setup_logging(verbose)
    synth = PathSynthesizer(
        BackendChatLLM(_backend(backend, model, base_url)), MathVerifier(), 0.0, max_tokens
    )
    _print_stats(pipeline.synthesize(critiqued, synth, output, max_workers=workers))


@app.command()
@clean_errors
def export(
    synthesized: InArg,
    output: OutputOpt = Path("sft.jsonl"),
    template: Annotated[
        str,
        typer.Option(
            "--template",
            help="default, crps (the authors' prompt) or a format string with {problem}.",
        ),
    ] = "default",
    oversample_to: Annotated[
        int | None,
        typer.Option("--oversample-to", help="Repeat rows up to this count (off by default)."),
    ] = None,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Verified, deduplicated paths → TRL prompt/completion JSONL; prints the unique count."""
    from crps_synth import pipeline

    setup_logging(verbose)
    stats, report = pipeline.export(
        synthesized, output, template=template, oversample_to=oversample_to, seed=seed
    )
    _print_stats(stats)
    out.print(f"{report.n_unique} unique examples ({report.n_written} written) → {output}")


@app.command()
@clean_errors
def train(
    data: Annotated[Path, typer.Argument(help="SFT JSONL from `export` (prompt, completion).")],
    model: ModelOpt,
    output: OutputOpt = Path("student"),
    epochs: Annotated[float, typer.Option("--epochs")] = 3.0,
    lr: Annotated[float, typer.Option("--lr")] = 2e-5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    max_steps: Annotated[int, typer.Option("--max-steps", help="-1 = by epochs.")] = -1,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune a student with TRL SFTTrainer (completion-only loss; paper settings by default)."""
    from crps_synth.export import rows_to_dataset
    from crps_synth.train import train_sft
    from papercore.io import read_jsonl
    from papercore.models import load_tokenizer

    setup_logging(verbose)
    rows = read_jsonl(
        data,
        required=("prompt", "completion", "problem_id", "contrast_type", "problem", "solution"),
    )
    train_sft(
        rows_to_dataset(rows),
        model,
        load_tokenizer(model),
        output,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        seed=seed,
    )
    out.print(f"student saved to {output}")


@app.command()
@clean_errors
def demo(verbose: VerboseOpt = False) -> None:
    """The method in miniature on the toy domain (CPU, ~1–2 min): CRPS vs rejection sampling."""
    from crps_synth.demo import run_demo

    setup_logging(verbose)
    res = run_demo()
    out.print(
        f"{res.method} {res.metric} {res.value:.3f} vs {res.baseline} {res.baseline_value:.3f} "
        f"(ratio {res.ratio:.2f}; floor {res.floor} {res.floor_name}; {res.kind})"
    )
    out.print_json(json.dumps(res.details))
