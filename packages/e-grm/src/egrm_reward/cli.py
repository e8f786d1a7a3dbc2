"""The ``e-grm`` command line: thin wrappers over the library, with rich progress bars."""

from __future__ import annotations

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
    "e-grm",
    "E-GRM: a generative reward model that reasons (CoT) only when M parallel direct judgements "
    "disagree, with a hybrid regression-ranking path scorer.",
)

ModelArg = Annotated[
    str,
    typer.Option("--model", "-m", help="Generator (judge) model: local directory or served name."),
]
BackendOpt = Annotated[str, typer.Option("--backend", help="transformers, vllm or openai.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible server URL (backend openai).")
]
ScorerOpt = Annotated[
    Path | None, typer.Option("--scorer", help="Saved PathScorer directory (LONG routes).")
]
MOpt = Annotated[int, typer.Option("--m", help="Parallel direct decodings M (>= 2).")]
TauOpt = Annotated[float, typer.Option("--tau", help="Consensus threshold τ in (0, 1].")]
TempsOpt = Annotated[
    str, typer.Option("--temperatures", help="Comma-separated schedule temperatures (cycled to M).")
]
TopPOpt = Annotated[
    str, typer.Option("--top-ps", help="Comma-separated schedule top-p values (cycled to M).")
]
ExtractorOpt = Annotated[
    str | None,
    typer.Option(
        "--extractor",
        help="Answer extractor for answer items: boxed_math, numeric, final_answer, regex:<pattern>.",
    ),
]
ModeOpt = Annotated[
    str, typer.Option("--route", help="egrm (consensus gate), always-cot or never-cot.")
]


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise typer.BadParameter(f"{name} is empty")
    return vals


def _config(
    m: int,
    tau: float,
    temperatures: str,
    top_ps: str,
    direct_tokens: int,
    cot_tokens: int,
    extractor: str | None,
    equivalence: str,
    route: str,
    aggregation: str,
    seed: int,
):
    from egrm_reward.consensus import SamplingSchedule
    from egrm_reward.errors import ConsensusConfigError, EGRMValueError
    from egrm_reward.pipeline import EGRMConfig

    if m < 2:
        raise ConsensusConfigError(
            f"--m must be >= 2 (consensus is undefined for one sample), got {m}"
        )
    if route not in ("egrm", "always-cot", "never-cot"):
        raise EGRMValueError(f"--route must be egrm, always-cot or never-cot, got {route!r}")
    ts, ps = _floats(temperatures, "--temperatures"), _floats(top_ps, "--top-ps")
    sched = SamplingSchedule(
        tuple(ts[i % len(ts)] for i in range(m)),
        tuple(ps[i % len(ps)] for i in range(m)),
        tuple(range(m)),
    )
    kw: dict[str, Any] = {}
    if extractor:
        kw["answer_extractor"] = extractor
    return EGRMConfig(
        schedule=sched,
        tau=tau,
        always_cot=route == "always-cot",
        never_cot=route == "never-cot",
        direct_max_new_tokens=direct_tokens,
        cot_max_new_tokens=cot_tokens,
        equivalence=equivalence,
        aggregation=aggregation,
        seed=seed,
        **kw,
    )


def _grm(model: str, backend: str, base_url: str | None, scorer: Path | None, config):
    from egrm_reward.pipeline import EfficientGRM
    from egrm_reward.scorer import PathScorer
    from papercore.generation import make_backend

    with status(f"loading {model} ({backend})"):
        if backend == "openai":
            if not base_url:
                raise ValueError("--backend openai needs --base-url")
            be = make_backend("openai", base_url=base_url, model=model)
        else:
            be = make_backend(backend, model=model)
        sc = PathScorer.from_pretrained(scorer) if scorer else None
    return EfficientGRM(be, scorer=sc, config=config)


def _run(grm, items: list[dict], batch_size: int, what: str) -> list:
    results = []
    with make_progress() as progress:
        task = progress.add_task(what, total=len(items))
        for s in range(0, len(items), batch_size):
            results.extend(grm(items[s : s + batch_size]))
            progress.advance(task, min(batch_size, len(items) - s))
    return results


def _summary(results) -> dict[str, float]:
    n = len(results)
    return {
        "items": n,
        "cot_trigger_rate": sum(r.route.value == "long" for r in results) / n,
        "generated_tokens": sum(r.cost.generated_tokens for r in results),
        "decode_steps": sum(r.cost.decode_steps for r in results),
        "scorer_tokens": sum(r.cost.n_scorer_tokens for r in results),
        "wall_time_s": round(sum(r.cost.wall_time_s for r in results), 3),
    }


@app.command()
@clean_errors
def judge(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="JSONL items: prompt [+ response_a, response_b | response]."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Results JSONL.")],
    model: ModelArg,
    backend: BackendOpt = "transformers",
    base_url: BaseUrlOpt = None,
    scorer: ScorerOpt = None,
    m: MOpt = 5,
    tau: TauOpt = 0.8,
    temperatures: TempsOpt = "0.3,0.5,0.7,0.9,1.0",
    top_ps: TopPOpt = "0.8,0.9,0.95,0.95,1.0",
    direct_tokens: Annotated[int, typer.Option(help="Max new tokens of a direct judgement.")] = 32,
    cot_tokens: Annotated[int, typer.Option(help="Max new tokens of a CoT path.")] = 1024,
    extractor: ExtractorOpt = None,
    equivalence: Annotated[str, typer.Option(help="exact or math (math-verify).")] = "exact",
    route: ModeOpt = "egrm",
    aggregation: Annotated[str, typer.Option(help="argmax, weighted_vote or vote.")] = "argmax",
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 16,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Judge every item of a JSONL file; write one result (verdict, route, costs) per line."""
    from papercore.io import read_jsonl, write_jsonl

    setup_logging(verbose)
    cfg = _config(
        m,
        tau,
        temperatures,
        top_ps,
        direct_tokens,
        cot_tokens,
        extractor,
        equivalence,
        route,
        aggregation,
        seed,
    )
    items = read_jsonl(data, required=("prompt",))
    grm = _grm(model, backend, base_url, scorer, cfg)
    results = _run(grm, items, batch_size, "judging")
    write_jsonl(output, [{**it, **r.as_dict()} for it, r in zip(items, results, strict=True)])
    for k, v in _summary(results).items():
        out.print(f"{k}: {v}")


@app.command()
@clean_errors
def bestofn(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="JSONL: prompt, candidates (list of strings).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Results JSONL (best index, scores).")
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Judge model (E-GRM answer mode) ...")
    ] = None,
    scorer: Annotated[
        Path | None, typer.Option("--scorer", help="... or a saved PathScorer.")
    ] = None,
    backend: BackendOpt = "transformers",
    base_url: BaseUrlOpt = None,
    m: MOpt = 5,
    tau: TauOpt = 0.8,
    extractor: ExtractorOpt = None,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Pick the best of N candidates per prompt, with the path scorer or the E-GRM judge."""
    from egrm_reward.bestofn import BestOfNSelector
    from egrm_reward.scorer import PathScorer
    from papercore.io import read_jsonl, write_jsonl

    setup_logging(verbose)
    if (model is None) == (scorer is None):
        raise ValueError("give exactly one of --model (E-GRM judge) or --scorer (PathScorer)")
    rows = read_jsonl(data, required=("prompt", "candidates"))
    if scorer is not None:
        sel = BestOfNSelector(scorer=PathScorer.from_pretrained(scorer))
    else:
        cfg = _config(
            m,
            tau,
            "0.3,0.5,0.7,0.9,1.0",
            "0.8,0.9,0.95,0.95,1.0",
            32,
            1024,
            extractor,
            "exact",
            "egrm",
            "argmax",
            seed,
        )
        sel = BestOfNSelector(grm=_grm(model, backend, base_url, None, cfg))  # type: ignore[arg-type]
    res = []
    with make_progress() as progress:
        task = progress.add_task("best-of-N", total=len(rows))
        for r in rows:
            pick = sel.select(r["prompt"], r["candidates"])
            res.append({**r, "best_index": pick.index, "scores": pick.scores})
            progress.advance(task)
    write_jsonl(output, res)
    out.print(f"wrote {len(res)} selections to {output}")


@app.command("train-scorer")
@clean_errors
def train_scorer_cmd(
    paths: Annotated[
        Path,
        typer.Option(
            "--paths", help="JSONL groups: prompt, paths (list), targets (list in [0, 1])."
        ),
    ],
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone", help="Scorer backbone (classifier base, or frozen feature model)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory of the trained scorer.")
    ],
    mode: Annotated[
        str, typer.Option(help="mlp (frozen backbone + MLP) or sequence_classification.")
    ] = "mlp",
    lam: Annotated[
        float, typer.Option("--lam", help="λ of the hybrid loss (1 = regression, 0 = ranking).")
    ] = 0.5,
    margin: Annotated[float, typer.Option(help="Ranking margin m.")] = 0.0,
    rank_loss: Annotated[
        str, typer.Option(help="pairwise_logistic, margin_hinge or listnet.")
    ] = "pairwise_logistic",
    reg_loss: Annotated[str, typer.Option(help="mse or bce.")] = "mse",
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    groups_per_batch: Annotated[int, typer.Option(help="Groups per batch.")] = 8,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Train a PathScorer with the hybrid regression-ranking loss on grouped paths."""
    from egrm_reward.losses import HybridRankRegLoss
    from egrm_reward.scorer import PathScorer, PathScorerConfig
    from egrm_reward.trainer import PathGroup, train_scorer
    from papercore.io import read_jsonl

    setup_logging(verbose)
    rows = read_jsonl(paths, required=("prompt", "paths", "targets"))
    groups = [
        PathGroup(r["prompt"], list(r["paths"]), [float(t) for t in r["targets"]]) for r in rows
    ]
    loss = HybridRankRegLoss(lam=lam, margin=margin, rank_loss=rank_loss, reg_loss=reg_loss)
    with status(f"loading {backbone}"):
        sc = PathScorer(PathScorerConfig(mode=mode, backbone=backbone))
    with status(f"training the scorer on {len(groups)} groups"):
        trainer = train_scorer(
            sc,
            groups,
            output_dir=str(output),
            loss=loss,
            epochs=epochs,
            lr=lr,
            groups_per_batch=groups_per_batch,
            seed=seed,
        )
    sc.save_pretrained(output)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out.print(
        f"trained {trainer.state.global_step} steps; last loss {losses[-1] if losses else float('nan'):.4f}; saved to {output}"
    )


@app.command("eval")
@clean_errors
def eval_cmd(
    bench: Annotated[
        str,
        typer.Option(
            "--bench",
            help="rewardbench:FILE.parquet, rm-bench:FILE.json or jsonl:FILE (prompt, response_a, response_b, label A|B).",
        ),
    ],
    model: ModelArg,
    backend: BackendOpt = "transformers",
    base_url: BaseUrlOpt = None,
    scorer: ScorerOpt = None,
    m: MOpt = 5,
    tau: TauOpt = 0.8,
    sweep_tau: Annotated[
        str | None,
        typer.Option("--sweep-tau", help="Comma-separated τ values (accuracy-cost curve)."),
    ] = None,
    temperatures: TempsOpt = "0.3,0.5,0.7,0.9,1.0",
    top_ps: TopPOpt = "0.8,0.9,0.95,0.95,1.0",
    direct_tokens: Annotated[int, typer.Option(help="Max new tokens of a direct judgement.")] = 32,
    cot_tokens: Annotated[int, typer.Option(help="Max new tokens of a CoT path.")] = 1024,
    route: ModeOpt = "egrm",
    aggregation: Annotated[str, typer.Option(help="argmax, weighted_vote or vote.")] = "argmax",
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Results JSON.")] = None,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Accuracy, CoT trigger rate, tokens and wall time on RewardBench, RM-Bench or a JSONL of pairs."""
    import dataclasses
    import functools

    from egrm_reward import data as bd
    from egrm_reward.errors import DataFormatError
    from papercore.io import read_jsonl, write_json

    setup_logging(verbose)
    kind, _, path = bench.partition(":")
    if kind not in ("rewardbench", "rm-bench", "jsonl") or not path:
        raise DataFormatError(
            f"--bench must be rewardbench:FILE, rm-bench:FILE or jsonl:FILE, got {bench!r}"
        )
    taus = _floats(sweep_tau, "--sweep-tau") if sweep_tau else [tau]
    cfg0 = _config(
        m,
        taus[0],
        temperatures,
        top_ps,
        direct_tokens,
        cot_tokens,
        None,
        "exact",
        route,
        aggregation,
        seed,
    )
    grm = _grm(model, backend, base_url, scorer, cfg0)
    if kind == "rewardbench":
        data: Any = bd.load_rewardbench(path)[:limit]
        n = len(data)
    elif kind == "rm-bench":
        data = bd.load_rmbench(path)[:limit]
        n = 9 * len(data)
    else:
        data = read_jsonl(path, required=("prompt", "response_a", "response_b", "label"))[:limit]
        n = len(data)
    report = []
    for t in taus:
        grm.config = dataclasses.replace(cfg0, tau=t)
        grm.router = type(grm.router)(t, cfg0.always_cot, cfg0.never_cot)
        with make_progress() as progress:
            task = progress.add_task(f"eval τ={t}", total=n)
            step = functools.partial(progress.advance, task)
            if kind == "rewardbench":
                res = bd.evaluate_rewardbench(grm, data, seed=seed, on_batch=step)
                acc, extra = res["overall"], {"sections": res["sections"]}
            elif kind == "rm-bench":
                res = bd.evaluate_rmbench(grm, data, seed=seed, on_batch=step)
                acc, extra = res["avg"], {k: res[k] for k in ("hard", "normal", "easy", "matrix")}
            else:
                results = []
                for s in range(0, len(data), 16):
                    results.extend(grm(data[s : s + 16]))
                    step(min(16, len(data) - s))
                correct = [r.answer == row["label"] for r, row in zip(results, data, strict=True)]
                res = {"results": results}
                acc, extra = sum(correct) / len(correct), {}
        row = {"tau": t, "accuracy": acc, **_summary(res["results"]), **extra}
        report.append(row)
        out.print(
            f"τ={t}: accuracy {acc:.4f}, CoT trigger rate {row['cot_trigger_rate']:.3f}, "
            f"tokens {row['generated_tokens']}, decode steps {row['decode_steps']}, wall {row['wall_time_s']:.1f} s"
        )
    if output:
        write_json(output, {"bench": bench, "model": model, "rows": report})
