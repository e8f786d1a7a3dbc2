"""The ``ts-guard`` command line: judge, train, bench (evaluate a guard), flow, demo.

Steps files are JSONL, one guard input per line::

    {"user_request": "...", "tools": [...], "history": [{"action": {"name": ..., "arguments": {...}},
     "observation": "...", "thought": "..."}], "candidate": {"name": ..., "arguments": {...}},
     "gt_mur": false, "gt_pi": true, "gt_rating": 1.0}

(the ``gt_*`` labels are needed by ``train`` and ``bench`` only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    "ts-guard",
    "TS-Guard: judge tool calls before they run (malicious request / prompt injection / harmfulness), "
    "train the guard with TRL GRPO, run the TS-Flow feedback loop.",
)

InputOpt = Annotated[
    Path, typer.Option("--input", "-i", help="Steps JSONL (see `ts-guard --help`).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Guard model directory (transformers). Omit with --rule."),
]
RuleOpt = Annotated[
    bool, typer.Option("--rule", help="Use the rule guard (argument provenance), no model.")
]
OfficialOpt = Annotated[
    bool,
    typer.Option("--official", help="Parse with the released regexes (backslash closing only)."),
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(
        "--template", help="Prompt template file ({user_request}, {agent_action}, {env_info})."
    ),
]


def _row_input(row: dict[str, Any]):
    from ts_guard.errors import CandidateError
    from ts_guard.types import GuardInput, Step, parse_tool_call

    if "candidate" not in row or row["candidate"] in (None, ""):
        raise CandidateError(f"each row needs a 'candidate' tool call, got keys {sorted(row)}")
    history = [
        Step(parse_tool_call(h["action"]), h.get("observation"), h.get("thought"))
        for h in row.get("history", [])
    ]
    return GuardInput(
        row.get("user_request", ""),
        row.get("tools", []),
        history,
        parse_tool_call(row["candidate"]),
    )


def _guard(model: str | None, rule: bool, official: bool, template: str | None):
    from ts_guard.errors import ConfigError

    if rule == (model is not None):
        raise ConfigError("give exactly one of --model DIR or --rule")
    if rule:
        from ts_guard.guards import RuleGuard

        return RuleGuard()
    from ts_guard.guards import HFGuard

    with status(f"loading {model}"):
        return HFGuard(model, official=official, template=template)


@app.command()
@clean_errors
def judge(
    input: InputOpt,
    output: OutputOpt = Path("verdicts.jsonl"),
    model: ModelOpt = None,
    rule: RuleOpt = False,
    official: OfficialOpt = False,
    template: TemplateOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Judge every candidate call of a steps file; write one verdict per line."""
    from dataclasses import asdict

    from papercore.io import read_jsonl, write_jsonl

    setup_logging(verbose)
    guard = _guard(model, rule, official, template)
    rows = []
    for row in read_jsonl(input):
        v = guard.judge(_row_input(row))
        rows.append(asdict(v))
    write_jsonl(output, rows)
    out.print(
        f"{len(rows)} verdicts → {output} ({sum(r['label'] != 'safe' for r in rows)} blocked)"
    )


@app.command()
@clean_errors
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Base model directory.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled steps JSONL.")],
    output: OutputOpt = Path("ts-guard-out"),
    weights: Annotated[
        str, typer.Option("--weights", help="uniform | pi_mur_heavy | w_pi,w_mur,w_rating")
    ] = "uniform",
    algo: Annotated[str, typer.Option("--algo", help="grpo or sft.")] = "grpo",
    max_steps: Annotated[int, typer.Option("--max-steps", help="-1 = full epochs.")] = -1,
    real_scale: Annotated[
        bool,
        typer.Option(
            "--real-scale/--small",
            help="Released GRPO settings (16 rollouts, lr 1e-6, beta 0.001).",
        ),
    ] = True,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Train the guard with TRL GRPO (three head rewards) or the SFT baseline."""
    from papercore.io import read_jsonl
    from ts_guard.data import GuardSample, StepLabel, steps_to_dataset
    from ts_guard.errors import ConfigError
    from ts_guard.train import train_grpo, train_sft

    setup_logging(verbose)
    if algo not in ("grpo", "sft"):
        raise ConfigError(f"--algo must be grpo or sft, got {algo!r}")
    samples = [
        GuardSample(
            _row_input(r), StepLabel(r["gt_mur"], r["gt_pi"], r["gt_rating"]), r.get("source", "")
        )
        for r in read_jsonl(data)
    ]
    stats: dict[str, int] = {}
    ds = steps_to_dataset(samples, stats=stats)
    out.print(f"{stats['kept']} samples ({stats['dropped_overlong']} overlong dropped)")
    if algo == "grpo":
        train_grpo(
            model,
            ds,
            output_dir=output,
            weights=weights,
            real_scale=real_scale,
            max_steps=max_steps,
            seed=seed,
        )
    else:
        train_sft(model, ds, output_dir=output, max_steps=max_steps, seed=seed)
    out.print(f"saved → {output}")


@app.command()
@clean_errors
def bench(
    input: InputOpt,
    model: ModelOpt = None,
    rule: RuleOpt = False,
    official: OfficialOpt = False,
    template: TemplateOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a guard on labelled steps: accuracy, unsafe-F1, FPR (strict/loose/exact), parse failures."""
    from papercore.io import read_jsonl
    from ts_guard.data import GuardSample, StepLabel
    from ts_guard.evaluate import evaluate_guard

    setup_logging(verbose)
    guard = _guard(model, rule, official, template)
    samples = [
        GuardSample(_row_input(r), StepLabel(r["gt_mur"], r["gt_pi"], r["gt_rating"]))
        for r in read_jsonl(input)
    ]
    res = evaluate_guard(guard, samples)
    out.print_json(json.dumps(res))


@app.command()
@clean_errors
def flow(
    env: Annotated[str, typer.Option("--env", help="synthetic (bank world).")] = "synthetic",
    mode: Annotated[str, typer.Option("--mode", help="none, abort or feedback.")] = "feedback",
    episodes: Annotated[int, typer.Option("--episodes")] = 200,
    flip: Annotated[float, typer.Option("--flip", help="Noisy-oracle flip probability.")] = 0.1,
    seed: SeedOpt = 0,
) -> None:
    """Run TS-Flow episodes with a scripted agent and a noisy-oracle guard; print ASR and utility."""
    from ts_guard.demo import run_mode
    from ts_guard.errors import ConfigError

    if env != "synthetic":
        raise ConfigError(
            f"--env must be 'synthetic' (AgentDojo: see bench/bench_flow.py), got {env!r}"
        )
    if mode not in ("none", "abort", "feedback"):
        raise ConfigError(f"--mode must be none, abort or feedback, got {mode!r}")
    res = run_mode(mode, seed, episodes, flip)
    out.print(
        f"mode={mode}: ASR {res['asr']:.3f}, utility under attack {res['utility']:.3f} ({episodes} episodes)"
    )


@app.command()
@clean_errors
def demo(seed: SeedOpt = 0, verbose: VerboseOpt = False) -> None:
    """TS-Flow in miniature (synthetic bank world): ASR and utility for none / abort / feedback."""
    from ts_guard.demo import run_demo

    setup_logging(verbose)
    res = run_demo(seed=seed)
    for mode, m in res.details["modes"].items():
        out.print(f"{mode:<9} ASR {m['asr']:.3f}  utility {m['utility']:.3f}")
    out.print(
        f"{res.method} vs {res.baseline}: {res.metric} {res.value:.3f} vs {res.baseline_value:.3f} ({res.ratio:.2f}×)"
    )
