"""The ``agentic-sql`` command line: a thin layer over the library (spec §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from papercore.cli import (
    ModelOpt,
    OutputOpt,
    SeedOpt,
    VerboseOpt,
    clean_errors,
    console,
    make_app,
    out,
    setup_logging,
    status,
    track,
)

app = make_app(
    "agentic-sql",
    "Multi-turn Text-to-SQL agent trained with GRPO: trajectory reward ATR over per-turn CSMR "
    "scores, in a read-only SQLite sandbox.",
)

DbRootOpt = Annotated[
    Path, typer.Option("--db-root", help="Folder of <db_id>/<db_id>.sqlite databases.")
]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="ATR improvement weight.")]
BetaOpt = Annotated[float, typer.Option("--beta", help="ATR regression weight (> alpha).")]
GammaOpt = Annotated[float, typer.Option("--gamma", help="ATR stagnation cost per turn.")]
LamOpt = Annotated[float, typer.Option("--lam", help="Weight of the transition sum in ATR.")]


@app.command("exec")
@clean_errors
def exec_cmd(
    sql: Annotated[list[str], typer.Argument(help="One or more SELECT queries.")],
    db_root: DbRootOpt,
    db_id: Annotated[str, typer.Option("--db-id", help="Database id (folder name).")],
    timeout: Annotated[float, typer.Option("--timeout", help="Per-query timeout (s).")] = 5.0,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Rows shown.")] = 50,
    verbose: VerboseOpt = False,
) -> None:
    """Run queries in the read-only sandbox and print each observation."""
    from agentic_sql.executor import SQLiteExecutor, format_observation

    setup_logging(verbose)
    with SQLiteExecutor(db_root, timeout_s=timeout, isolation="thread") as ex:
        _require_db(ex, db_id)
        for q in track(sql, "executing", total=len(sql)):
            res = ex.execute(db_id, q)
            out.print(format_observation(res, max_rows=max_rows), highlight=False, markup=False)


@app.command()
@clean_errors
def score(
    db_root: DbRootOpt,
    pred: Annotated[
        Path, typer.Option("--pred", help="Predictions: JSON list of SQL, or BIRD's dict.")
    ],
    gold: Annotated[Path, typer.Option("--gold", help="Gold split (BIRD/Spider JSON or JSONL).")],
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="ex (BIRD), spider_ex (Spider test-suite result_eq), spider2 (Spider 2.0-lite "
            "local, official gold CSVs; needs --gold-dir) or csmr.",
        ),
    ] = "ex",
    timeout: Annotated[float, typer.Option("--timeout", help="Per-query timeout (s).")] = 30.0,
    workers: Annotated[int, typer.Option("--workers", help="Parallel worker processes.")] = 2,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write metrics JSON.")
    ] = None,
    gold_dir: Annotated[
        Path | None,
        typer.Option(
            "--gold-dir",
            help="spider2: spider2-lite/evaluation_suite/gold (spider2lite_eval.jsonl, "
            "exec_result/); --gold is then spider2-lite.jsonl and --pred a JSON list or a folder "
            "of <instance_id>.sql files.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Execution accuracy (BIRD, Spider test suite or Spider 2.0-lite) or mean CSMR."""
    from agentic_sql.data import load_bird
    from agentic_sql.eval import evaluate_ex
    from agentic_sql.executor import SQLiteExecutor
    from papercore.io import write_json

    setup_logging(verbose)
    if metric not in ("ex", "csmr", "spider_ex", "spider2"):
        raise ValueError(f"--metric must be 'ex', 'spider_ex', 'spider2' or 'csmr', got {metric!r}")
    if metric == "spider2":
        from agentic_sql.spider2 import read_spider2_predictions

        if gold_dir is None:
            raise ValueError(
                "--metric spider2 needs --gold-dir (spider2-lite/evaluation_suite/gold)"
            )
        with status("loading gold"):
            ds = _load_spider2_for_scoring(gold, db_root, gold_dir)
        preds = read_spider2_predictions(pred, [r["instance_id"] for r in ds])
    else:
        with status("loading gold"):
            ds = load_bird(gold, db_root, with_schema=False)
        preds = _read_preds(pred, len(ds))
    with SQLiteExecutor(db_root, timeout_s=timeout, max_workers=workers) as ex:
        if metric != "csmr":
            with status(f"executing {len(preds)} predictions and their gold queries"):
                res = evaluate_ex(
                    preds,
                    ds,
                    ex,
                    timeout_s=timeout,
                    num_workers=workers,
                    metric=metric,  # type: ignore[arg-type]
                    gold_dir=gold_dir,
                )
        else:
            res = _csmr_scores(preds, ds, ex)
    out.print_json(json.dumps(res, default=str))
    if output:
        write_json(output, res)


def _load_spider2_for_scoring(split: Path, db_root: Path, gold_dir: Path) -> Any:
    from agentic_sql.data import load_spider2_sqlite

    sql_dir = gold_dir / "sql"
    return load_spider2_sqlite(
        split,
        db_root,
        gold_sql_dir=sql_dir if sql_dir.is_dir() else None,
        require_gold_sql=False,
        with_schema=False,
    )


def _read_preds(path: Path, n: int) -> list[str]:
    """Predictions through :func:`agentic_sql.eval.read_predictions`, checked against ``n`` questions."""
    from agentic_sql.eval import read_predictions

    preds = read_predictions(path)
    if len(preds) != n:
        raise ValueError(
            f"{path} has {len(preds)} predictions but the gold split has {n} questions"
        )
    return preds


def _csmr_scores(preds: list[str], ds: Any, ex: Any) -> dict[str, Any]:
    from agentic_sql.rewards import GoldCache, score_query

    gold = GoldCache(ex, timeout_s=ex.timeout_s)  # the same gold timeout as the EX metric
    by: dict[str, list[float]] = {}
    scores, n_invalid = [], 0
    for p, row in track(list(zip(preds, ds, strict=True)), "scoring (CSMR)"):
        g = gold.get(row["db_id"], row["gold_sql"])
        if g is None:
            n_invalid += 1
            continue
        s = score_query(ex, row["db_id"], p, g).score
        scores.append(s)
        by.setdefault(str(row.get("difficulty") or "all"), []).append(s)
    mean = sum(scores) / len(scores) if scores else 0.0
    return {
        "csmr": mean,
        "by_difficulty": {k: sum(v) / len(v) for k, v in sorted(by.items())},
        "n": len(scores),
        "n_invalid_gold": n_invalid,
    }


def _atr_cfg(alpha, beta, gamma, lam, normalize, turn_cost, allow=False):
    from agentic_sql.atr import ATRConfig

    return ATRConfig(
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        lam=lam,
        normalize_by_turns=normalize,
        turn_cost=turn_cost,
        allow_non_dissipative=allow,
    )


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None


@app.command()
@clean_errors
def atr(
    scores: Annotated[str, typer.Option("--scores", help="Per-turn CSMR scores, e.g. 0,0.5,1.")],
    errors: Annotated[
        str | None, typer.Option("--errors", help="Per-turn error flags, e.g. 1,0,0.")
    ] = None,
    alpha: AlphaOpt = 1.0,
    beta: BetaOpt = 2.0,
    gamma: GammaOpt = 0.05,
    lam: LamOpt = 0.5,
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize/--no-normalize",
            help="Divide the sum by T (off by default: only length-consistent for a fixed T).",
        ),
    ] = False,
    turn_cost: Annotated[float | None, typer.Option("--turn-cost", help="Per-turn cost.")] = None,
) -> None:
    """Print the ATR of one trajectory and its state path."""
    from agentic_sql.atr import aggregate_trajectory_reward, build_transition_matrix, state_path

    cfg = _atr_cfg(alpha, beta, gamma, lam, normalize, turn_cost)
    s = _floats(scores, "--scores")
    e = [bool(x) for x in _floats(errors, "--errors")] if errors else None
    path = state_path(s, e, cfg)
    _, values = build_transition_matrix(cfg)
    value = aggregate_trajectory_reward(s, e, cfg)
    out.print(f"ATR = {value:.6g}")
    out.print(
        "state path: " + " -> ".join(f"{z} (v={values[z]:.3g})" for z in path), highlight=False
    )


@app.command("check-matrix")
@clean_errors
def check_matrix(
    alpha: AlphaOpt = 1.0,
    beta: BetaOpt = 2.0,
    gamma: GammaOpt = 0.05,
    lam: LamOpt = 0.5,
) -> None:
    """Print the transition matrix W and whether it is dissipative (exit code 1 if not)."""
    import numpy as np

    from agentic_sql.atr import build_transition_matrix, check_dissipative

    cfg = _atr_cfg(alpha, beta, gamma, lam, True, None, allow=True)
    W, values = build_transition_matrix(cfg)
    out.print("state values: " + np.array2string(values, precision=3))
    out.print("W =\n" + np.array2string(W, precision=3, suppress_small=True))
    ok = check_dissipative(W, values)
    out.print(f"dissipative: {'yes' if ok else 'NO (some cycle has non-negative weight)'}")
    if not ok:
        raise typer.Exit(1)


@app.command()
@clean_errors
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML TrainConfig.")],
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="Override output_dir.")
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--no-resume", help="Resume from the latest checkpoint."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """GRPO training with TRL (multi-GPU: `accelerate launch -m agentic_sql.cli train --config ...`)."""
    from agentic_sql.train import load_train_config
    from agentic_sql.train import train as run_train

    setup_logging(verbose)
    cfg = load_train_config(config, output_dir=output_dir, resume=resume)
    console.print(
        f"training {cfg.model} with reward={cfg.reward}, protocol={cfg.protocol} -> {cfg.output_dir}"
    )
    metrics = run_train(cfg)
    out.print_json(json.dumps(metrics, default=str))


@app.command("eval")
@clean_errors
def eval_cmd(
    model: ModelOpt,
    db_root: Annotated[
        Path | None, typer.Option("--db-root", help="Databases (default: the synthetic suite's).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="BIRD-style split JSON (default: the synthetic suite)."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="The protocol the model was trained with: tools (tool calls through the chat "
            "template, the training default) or text (<sql>/<solution> tags).",
        ),
    ] = "tools",
    backend: Annotated[
        str, typer.Option("--backend", help="Generation backend: transformers or vllm.")
    ] = "transformers",
    max_turns: Annotated[int, typer.Option("--max-turns", help="Turns per question.")] = 5,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Generation cap per turn (tokens).")
    ] = 512,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Questions generated together per call.")
    ] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Per-query timeout (s), agent turns and scoring.")
    ] = 30.0,
    workers: Annotated[int, typer.Option("--workers", help="Parallel SQL worker processes.")] = 2,
    tensor_parallel_size: Annotated[
        int, typer.Option("--tensor-parallel-size", help="vLLM only: GPUs per model.")
    ] = 1,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option("--gpu-memory-utilization", help="vLLM only: fraction of GPU memory."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N.")] = None,
    seed: SeedOpt = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON.")] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            help="Write BIRD's files (predict_dev.json, dev_gold.sql, dev.json), results.jsonl and "
            "metrics.json; a new or empty folder (or an earlier eval output).",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Multi-turn agent evaluation (greedy) and EX on a split, in the model's training protocol."""
    from agentic_sql.eval import check_eval_output_dir, run_agent_eval
    from agentic_sql.train import check_model_name
    from papercore.io import write_json

    setup_logging(verbose)
    if protocol not in ("tools", "text"):
        raise ValueError(f"--protocol must be 'tools' or 'text', got {protocol!r}")
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"--backend must be 'transformers' or 'vllm', got {backend!r}")
    for name, value in (("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size),
                        ("--max-turns", max_turns), ("--workers", workers)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout}")
    engine: dict[str, Any] = {}
    if backend == "vllm":
        engine["tensor_parallel_size"] = tensor_parallel_size
        if gpu_memory_utilization is not None:
            engine["gpu_memory_utilization"] = gpu_memory_utilization
    elif tensor_parallel_size != 1 or gpu_memory_utilization is not None:
        raise ValueError("--tensor-parallel-size / --gpu-memory-utilization need --backend vllm")
    check_model_name(str(model))  # before anything is written or loaded
    if output_dir is not None:
        check_eval_output_dir(output_dir)
    ds, db_root = _eval_split(data, db_root, seed, protocol=protocol, max_turns=max_turns)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    lm: Any = str(model)
    tok = None
    if backend == "transformers":
        from papercore.models import load_model, load_tokenizer

        with status(f"loading {model}"):
            tok, lm = load_tokenizer(model), load_model(model)
    with status(f"running the agent ({protocol} protocol, {backend}) on {len(ds)} questions"):
        res = run_agent_eval(
            lm,
            tok,
            ds,
            protocol=protocol,  # type: ignore[arg-type]
            backend=backend,
            engine_kwargs=engine,
            max_turns=max_turns,
            max_new_tokens_per_turn=max_new_tokens,
            batch_size=batch_size,
            timeout_s=timeout,
            num_workers=workers,
            greedy=True,
            db_root=db_root,
            seed=seed,
            output_dir=output_dir,
        )
    out.print_json(json.dumps(res, default=str))
    if output:
        write_json(output, res)


def _eval_split(
    data: Path | None,
    db_root: Path | None,
    seed: int,
    *,
    protocol: str = "text",
    max_turns: int = 5,
) -> tuple[Any, Path]:
    """The split to evaluate, with prompts for ``protocol``. Without ``--data``: a fresh synthetic
    suite in a new temporary folder, or, with ``--db-root`` pointing at a suite written by
    ``agentic-sql synth``, that suite's ``dev.json``. Never writes into ``--db-root``."""
    from agentic_sql.data import load_bird, make_synthetic_task_suite
    from agentic_sql.synth import SUITE_MARKER

    opts = {"protocol": protocol, "max_turns": max_turns}
    if data is None and db_root is not None:
        if (db_root / SUITE_MARKER).is_file() and (db_root / "dev.json").is_file():
            return load_bird(db_root / "dev.json", db_root, **opts), db_root
        raise ValueError(
            f"--db-root {str(db_root)!r} without --data: pass the split file to evaluate "
            f"(--data {db_root}/dev.json, say), or leave out both to evaluate a fresh synthetic "
            f"suite; nothing was written into {str(db_root)!r}"
        )
    if data is None:
        import tempfile

        ds, root = make_synthetic_task_suite(
            seed=seed, out_dir=Path(tempfile.mkdtemp(prefix="agentic-sql-")), **opts
        )
        return ds, Path(root)
    if db_root is None:
        raise ValueError("--data needs --db-root")
    return load_bird(data, db_root, **opts), db_root


@app.command()
@clean_errors
def synth(
    output: OutputOpt = Path("synthetic-sql"),
    n_dbs: Annotated[int, typer.Option("--n-dbs", help="Number of databases.")] = 4,
    n_questions: Annotated[int, typer.Option("--n-questions", help="Number of questions.")] = 200,
    seed: SeedOpt = 0,
) -> None:
    """Build the synthetic database / question suite (used by tests, demo and bench)."""
    from agentic_sql.data import make_synthetic_task_suite

    with status(f"building {n_dbs} databases and {n_questions} questions"):
        ds, root = make_synthetic_task_suite(
            n_dbs=n_dbs, n_questions=n_questions, seed=seed, out_dir=output
        )
    out.print(f"wrote {len(ds)} questions over {n_dbs} databases to {root}")


@app.command()
@clean_errors
def demo(verbose: VerboseOpt = False) -> None:
    """Run the package demo (ATR+CSMR vs binary EX on the synthetic suite, < 1 min on CPU)."""
    from agentic_sql.demo import run_demo

    setup_logging(verbose)
    with status("running the demo"):
        res = run_demo()
    out.print(
        f"{res.metric}: {res.method} = {res.value:.4g} vs {res.baseline} = {res.baseline_value:.4g} "
        f"(ratio {res.ratio:.3g}x)"
    )
    out.print_json(json.dumps(res.details, default=str))


def _require_db(executor: Any, db_id: str) -> None:
    from agentic_sql.env import _require_db as check

    check(executor, db_id)


if __name__ == "__main__":  # `python -m agentic_sql.cli` (e.g. under `accelerate launch -m`)
    app()
