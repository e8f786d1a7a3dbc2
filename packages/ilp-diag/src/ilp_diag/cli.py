"""The ``ilp-diag`` command line: scan → signals → diagnose → report, mitigate, demo.

Tables are JSONL files (one row per training sample, keyed by ``idx``); models load from local paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from papercore.cli import (
    SeedOpt,
    VerboseOpt,
    clean_errors,
    console,
    make_app,
    setup_logging,
    status,
)

app = make_app(
    "ilp-diag",
    "Find the SFT samples a model did not learn (re-prompting it with its own training inputs), attribute a "
    "cause (missing knowledge, conflict, inconsistency, forgetting, under-optimisation) and mitigate.",
)

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        "-d",
        help="Training records JSONL: idx, prompt, target|completion[, stage_id, task].",
    ),
]
OutOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Output JSONL / JSON / markdown file.")
]


def _read_df(path: Path):
    import pandas as pd

    from papercore.io import read_jsonl

    return pd.DataFrame(read_jsonl(path))


def _write_df(df, path: Path) -> None:
    from papercore.io import write_jsonl

    rows = json.loads(df.to_json(orient="records"))
    write_jsonl(path, rows)
    meta = {k: v for k, v in df.attrs.items()}
    if meta:
        Path(str(path) + ".meta.json").write_text(json.dumps(meta, indent=1, default=str))


def _records(path: Path):
    from ilp_diag.records import records_from_rows
    from papercore.io import read_jsonl

    return records_from_rows(read_jsonl(path))


@app.command()
@clean_errors
def scan(
    model: Annotated[str, typer.Option("--model", "-m", help="SFT model directory.")],
    data: DataOpt,
    output: OutOpt,
    judge: Annotated[str, typer.Option(help="exact | numeric | similarity")] = "exact",
    n: Annotated[int, typer.Option(help="Samples per prompt (plus one greedy).")] = 8,
    temperature: float = 0.7,
    criterion: Annotated[str, typer.Option(help="graded | greedy | pass@n")] = "graded",
    backend: Annotated[str, typer.Option(help="transformers | vllm | openai")] = "transformers",
    batch_size: int = 8,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Detect unlearned training samples (writes the detection table)."""
    from ilp_diag.detect import detect_unlearned
    from ilp_diag.judges import make_judge
    from papercore.generation import make_backend

    setup_logging(verbose)
    recs = _records(data)
    kw = {"batch_size": batch_size} if backend == "transformers" else {}
    with status("re-prompting the model with its training inputs"):
        df = detect_unlearned(
            make_backend(backend, model=model, **kw),
            recs,
            make_judge(judge),
            n=n,
            temperature=temperature,
            criterion=criterion,
            seed=seed,
        )
    _write_df(df, output)
    console.print(f"ILP rate ({criterion}): {df['unlearned'].mean():.3f} of {len(df)} → {output}")


@app.command()
@clean_errors
def signals(
    sft_model: Annotated[str, typer.Option("--sft-model", help="SFT model directory.")],
    data: DataOpt,
    output: OutOpt,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Base (pre-SFT) model directory.")
    ] = None,
    detection: Annotated[
        Path | None, typer.Option(help="Detection JSONL from `scan` (else computed).")
    ] = None,
    loss_log: Annotated[Path | None, typer.Option(help="LossTrajectoryCallback log JSONL.")] = None,
    stage_checkpoint: Annotated[
        list[str] | None,
        typer.Option(help="STAGE=DIR, model at the end of that stage (repeatable)."),
    ] = None,
    embedder: Annotated[str, typer.Option(help="minilm | hash")] = "minilm",
    judge: str = "exact",
    n: int = 8,
    temperature: float = 0.7,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Compute the per-sample signals table."""
    from ilp_diag.diagnoser import ILPDiagnoser
    from ilp_diag.errors import ConfigError
    from ilp_diag.judges import make_judge
    from ilp_diag.nll import check_same_tokenizer
    from papercore.models import load_model, load_tokenizer

    setup_logging(verbose)
    recs = _records(data)
    tok = load_tokenizer(sft_model)
    base = None
    if base_model:
        check_same_tokenizer(load_tokenizer(base_model), tok)
        base = load_model(base_model)
    ckpts = {}
    for item in stage_checkpoint or []:
        if "=" not in item:
            raise ConfigError(f"--stage-checkpoint expects STAGE=DIR, got {item!r}")
        s, d = item.split("=", 1)
        ckpts[int(s)] = load_model(d)
    dg = ILPDiagnoser(
        base,
        load_model(sft_model),
        tok,
        make_judge(judge),
        embedder=None if embedder == "minilm" else embedder,
        n=n,
        temperature=temperature,
        seed=seed,
    )
    with status("collecting signals"):
        sig = dg.collect_signals(
            recs,
            loss_log=_read_df(loss_log) if loss_log else None,
            stage_checkpoints=ckpts or None,
            detection=_read_df(detection) if detection else None,
        )
    _write_df(sig, output)
    console.print(f"signals for {len(sig)} samples → {output}")


@app.command("diagnose")
@clean_errors
def diagnose_cmd(
    signals: Annotated[Path, typer.Option("--signals", "-s", help="Signals JSONL.")],
    output: OutOpt,
    priority: Annotated[str, typer.Option(help="Rule order, comma-separated.")] = "C3,C4,C2,C1,C5",
    conflict_threshold: float = 0.5,
    base_conf_threshold: float = 0.6,
    margin_threshold: float = 2.0,
    base_nll_q: float = 0.9,
    rarity_q: float = 0.9,
    complexity_q: float = 0.9,
    verbose: VerboseOpt = False,
) -> None:
    """Attribute causes to the unlearned samples."""
    from ilp_diag.rules import DiagnosisConfig, diagnose

    setup_logging(verbose)
    cfg = DiagnosisConfig(
        conflict_threshold,
        base_conf_threshold,
        margin_threshold,
        base_nll_q,
        rarity_q,
        complexity_q,
        priority=tuple(p.strip() for p in priority.split(",") if p.strip()),
    )
    df = diagnose(_read_df(signals), cfg)
    _write_df(df, output)
    console.print(f"{int(df['unlearned'].sum())} unlearned samples diagnosed → {output}")


@app.command("report")
@clean_errors
def report_cmd(
    diagnosis: Annotated[
        Path, typer.Option("--diagnosis", help="Diagnosis JSONL from `diagnose`.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md | json")] = "md",
) -> None:
    """Summarise a diagnosis (ILP rate, causes, per task / stage)."""
    from ilp_diag.rules import report, report_markdown

    df = _read_df(diagnosis)
    meta = Path(str(diagnosis) + ".meta.json")
    if meta.exists():
        df.attrs = json.loads(meta.read_text())
    rep = report(df)
    text = report_markdown(rep) if fmt == "md" else json.dumps(rep, indent=1)
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


@app.command()
@clean_errors
def mitigate(
    cause: Annotated[str, typer.Option(help="C1 | C2 | C3 | C4 | C5")],
    data: DataOpt,
    diagnosis: Annotated[Path, typer.Option("--diagnosis", help="Diagnosis JSONL.")],
    output: OutOpt,
    corpus: Annotated[
        Path | None, typer.Option(help="C1: text corpus, one passage per line.")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="C3: majority | drop_minority | drop_all")
    ] = "majority",
    factor: Annotated[int, typer.Option(help="C2: up-weighting factor.")] = 4,
    ratio: Annotated[float, typer.Option(help="C4: replay ratio.")] = 0.1,
    alpha: float = 1.0,
    gamma: float = 1.0,
    seed: SeedOpt = 0,
) -> None:
    """Apply the mitigation for one cause; writes a new training file (or C5 sampling weights)."""
    from dataclasses import asdict

    from ilp_diag import mitigate as mt
    from ilp_diag.errors import ConfigError
    from ilp_diag.sft import records_dataset
    from papercore.io import write_jsonl

    recs = _records(data)
    diag = _read_df(diagnosis)
    code = cause.upper()
    if code == "C1":
        lines = corpus.read_text().splitlines() if corpus else None
        ds = mt.knowledge_injection_dataset(diag, lines, recs)
        n = write_jsonl(output, [{"text": t} for t in ds["text"]])
    elif code == "C2":
        tgt = [
            int(i)
            for i, cs in zip(diag["idx"], diag["causes"], strict=True)
            if "knowledge_conflict" in cs
        ]
        ds = mt.upweight(records_dataset(recs), tgt, factor)
        n = write_jsonl(output, ds.to_list())
    elif code == "C3":
        n = write_jsonl(
            output, [asdict(r) for r in mt.resolve_inconsistencies(recs, diag, strategy)]
        )
    elif code == "C4":
        stages = sorted({r.stage_id for r in recs})
        mixed = mt.replay_mixture(
            [records_dataset([r for r in recs if r.stage_id == s]) for s in stages], ratio, seed
        )
        n = write_jsonl(output, [row for ds in mixed for row in ds.to_list()])
    elif code == "C5":
        if "final_nll" not in diag:
            raise ConfigError(
                "C5 weights need a final_nll column in the diagnosis (run `signals` first)"
            )
        w = mt.loss_weights(diag["final_nll"].clip(lower=0).to_numpy(), alpha, gamma)
        n = write_jsonl(
            output,
            [{"idx": int(i), "weight": float(x)} for i, x in zip(diag["idx"], w, strict=True)],
        )
    else:
        raise ConfigError(f"cause must be one of C1..C5, got {cause!r}")
    console.print(f"{code}: wrote {n} rows → {output}")


@app.command()
@clean_errors
def demo(seed: SeedOpt = 0, verbose: VerboseOpt = False) -> None:
    """Run the package demo (planted conflicting duplicates: graded vs pass@n detection)."""
    from ilp_diag.demo import run_demo

    setup_logging(verbose)
    res = run_demo(seed=seed)
    console.print(
        f"{res.method}: {res.value:.3f}  vs  {res.baseline}: {res.baseline_value:.3f}  ({res.metric})"
    )
