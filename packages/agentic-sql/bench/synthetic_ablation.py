"""Miniature reproduction (spec §4): GRPO with four rewards from one SFT warm start, held-out EX.

On the synthetic suite (2 databases, 240 templated questions, 20% held out), a tiny Qwen2 is
SFT'd briefly on half of the training questions in the text protocol (``<sql>``/``<solution>``,
some trajectories explore first), so it is partially right. Then GRPO runs with identical
settings and seeds under (a) binary EX, (b) Arctic 1/0.1/0, (c) CSMR on the final answer and
(d) ATR over per-turn CSMR; held-out EX (greedy, multi-turn) is reported per reward over 3 seeds.

    nice -n 10 uv run --locked python packages/agentic-sql/bench/synthetic_ablation.py

Writes bench/results/synthetic_ablation.json (one entry per run, resumable) and prints one line per
reward with the ratio to binary EX. The SFT warm start is cached in bench/results/cache/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = RESULTS / "cache"
REWARDS = ("binary", "arctic", "csmr", "atr")
LABELS = {
    "binary": "(a) binary EX",
    "arctic": "(b) Arctic 1/0.1/0",
    "csmr": "(c) CSMR final-only",
    "atr": "(d) ATR+CSMR",
}

MODEL_KWARGS = {  # ~0.4M parameters: what a shared 2-core CPU can train 12 times in the budget
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 1024,
}


def compact_schema(db_path: Path) -> str:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        parts = []
        for t in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({t})")]
            parts.append(f"{t}({', '.join(cols)})")
    finally:
        con.close()
    return "; ".join(parts)


def build_rows(ds, root: Path) -> list[dict]:
    """Compact prompts (table signatures + question) keep sequences short on CPU."""
    schemas = {}
    rows = []
    for r in ds:
        if r["db_id"] not in schemas:
            schemas[r["db_id"]] = compact_schema(root / r["db_id"] / f"{r['db_id']}.sqlite")
        content = f"Tables: {schemas[r['db_id']]}\n"
        if r["evidence"]:
            content += f"Hint: {r['evidence']}\n"
        content += f"Question: {r['question']}"
        rows.append(
            {
                "prompt": [{"role": "user", "content": content}],
                "db_id": r["db_id"],
                "gold_sql": r["gold_sql"],
                "split": r["split"],
                "template": r["template"],
            }
        )
    return rows


def first_table(sql: str) -> str:
    return sql.split(" FROM ", 1)[1].split()[0]


def sft_model(rows, factory, seed: int, steps: int) -> Path:
    from agentic_sql.train import trajectory_sft_pairs, warm_start_sft
    from papercore.testing.builders import build_causal_tokenizer

    rng = random.Random(seed)
    train = [r for r in rows if r["split"] == "train"]
    sft_rows = rng.sample(train, len(train) // 2)  # ~50% of the training questions
    trajs = []
    for r in sft_rows:
        if rng.random() < 0.5:
            trajs.append([r["gold_sql"]])
        else:  # look at the main table first, then answer
            trajs.append([f"SELECT * FROM {first_table(r['gold_sql'])} LIMIT 3", r["gold_sql"]])
    extra = [r["prompt"][0]["content"] + " " + r["gold_sql"] for r in rows]
    tok_kwargs = {"vocab_size": 1024, "extra_texts": extra}
    tok = build_causal_tokenizer(**tok_kwargs)
    pairs = trajectory_sft_pairs(sft_rows, trajs, tok, factory, protocol="text")
    return warm_start_sft(
        pairs,
        CACHE,
        steps=steps,
        batch_size=16,
        lr=3e-3,
        seed=seed,
        arch="qwen2",
        model_kwargs=MODEL_KWARGS,
        tokenizer_kwargs=tok_kwargs,
    )


def evaluate(model, tok, rows, factory, max_turns: int) -> dict:
    """Greedy multi-turn episodes on held-out rows: EX, turns, format rate, regressions."""
    from agentic_sql.rollout import run_text_episodes
    from papercore.generation import make_backend

    gen = make_backend("transformers", model=model, tokenizer=tok, batch_size=64)
    model.eval()
    traces = run_text_episodes(
        gen,
        tok,
        [r["prompt"] for r in rows],
        rows,
        factory,
        max_turns=max_turns,
        max_new_tokens_per_turn=64,
        max_completion_length=256,
        temperature=0.0,
    )
    envs = [t.env for t in traces]
    n = len(envs)
    return {
        "ex": sum(e.final_ex for e in envs) / n,
        "format_ok": sum(e.format_ok for e in envs) / n,
        "mean_turns": sum(e.n_turns for e in envs) / n,
        "regression_frac": sum(
            any(b < a for a, b in zip(e.turn_scores, e.turn_scores[1:], strict=False)) for e in envs
        )
        / n,
        "n": n,
    }


def grpo_run(reward, seed, sft_dir, rows, root, factory, args) -> dict:
    from datasets import Dataset

    from agentic_sql.train import TrainConfig, build_trainer
    from papercore.models import load_model, load_tokenizer
    from papercore.seeding import seed_everything

    seed_everything(seed)
    tok, model = load_tokenizer(str(sft_dir)), load_model(str(sft_dir), dtype="float32")
    train_rows = [r for r in rows if r["split"] == "train"]
    ds = Dataset.from_list(train_rows)
    cfg = TrainConfig(
        model=str(sft_dir),
        output_dir=str(CACHE / f"grpo-{reward}-{seed}"),
        protocol="text",
        reward=reward,
        max_turns=args.max_turns,
        isolation="thread",
        max_new_tokens_per_turn=64,
        seed=seed,
        grpo={
            "max_steps": args.steps,
            "num_generations": args.G,
            "per_device_train_batch_size": args.G * args.prompts_per_step,
            "max_completion_length": 192,
            "learning_rate": args.lr,
            "beta": 0.0,
            "temperature": 1.0,
            "logging_steps": 1,
            "save_strategy": "no",
            "use_cpu": True,
            "report_to": "none",
            "disable_tqdm": True,
        },
    )
    t0 = time.perf_counter()
    trainer = build_trainer(cfg, model=model, tokenizer=tok, train_dataset=ds, db_root=root)
    trainer.train()
    train_s = time.perf_counter() - t0
    hist = [h for h in trainer.state.log_history if "frac_reward_zero_std" in h]
    zero_std = statistics.fmean(h["frac_reward_zero_std"] for h in hist) if hist else float("nan")
    train_ex = statistics.fmean(h.get("rewards/binary_ex/mean", float("nan")) for h in hist)
    test_rows = [r for r in rows if r["split"] == "test"]
    res = evaluate(trainer.model, tok, test_rows, factory, args.max_turns)
    res.update(
        reward=reward,
        seed=seed,
        frac_zero_std_groups=zero_std,
        train_binary_ex_mean=train_ex,
        train_seconds=train_s,
    )
    trainer._agentic_sql_env_factory.close()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rewards", nargs="+", default=list(REWARDS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--sft-steps", type=int, default=1000)
    p.add_argument("--G", type=int, default=4)
    p.add_argument("--prompts-per-step", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "synthetic_ablation.json")
    p.add_argument("--fresh", action="store_true", help="ignore finished runs in --out")
    p.add_argument("--report-only", action="store_true", help="print the table and plot from --out")
    args = p.parse_args()
    if args.report_only:
        report(json.loads(args.out.read_text()), plot=args.out.with_suffix(".png"))
        return
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)  # 2 threads spin-wait badly on a shared 2-core machine
    from agentic_sql.data import make_synthetic_task_suite
    from agentic_sql.env import make_environment_factory

    RESULTS.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    ds, root = make_synthetic_task_suite(n_dbs=2, n_questions=240, seed=0, out_dir=CACHE / "suite")
    rows = build_rows(ds, Path(root))
    eval_factory = make_environment_factory(
        root, isolation="thread", max_turns=args.max_turns, reward_kind="binary"
    )
    t0 = time.perf_counter()
    sft_dir = sft_model(rows, eval_factory, seed=0, steps=args.sft_steps)
    print(
        f"SFT warm start: {sft_dir.name} ({time.perf_counter() - t0:.0f} s incl. cache lookup)",
        flush=True,
    )

    from papercore.models import load_model, load_tokenizer

    test_rows = [r for r in rows if r["split"] == "test"]
    state = json.loads(args.out.read_text()) if args.out.exists() and not args.fresh else {}
    settings = {
        k: v for k, v in vars(args).items() if k not in ("out", "fresh", "seeds", "rewards")
    }
    if state.get("settings") != settings:
        state = {"settings": settings, "runs": []}
    if "sft" not in state:
        tok, model = load_tokenizer(str(sft_dir)), load_model(str(sft_dir), dtype="float32")
        state["sft"] = evaluate(model, tok, test_rows, eval_factory, args.max_turns)
        state["n_train"] = sum(r["split"] == "train" for r in rows)
        state["n_test"] = len(test_rows)
        args.out.write_text(json.dumps(state, indent=2))
    print(f"SFT only: held-out EX {state['sft']['ex']:.3f}", flush=True)
    done = {(r["reward"], r["seed"]) for r in state["runs"]}
    for seed in args.seeds:
        for reward in args.rewards:
            if (reward, seed) in done:
                continue
            res = grpo_run(reward, seed, sft_dir, rows, root, eval_factory, args)
            state["runs"].append(res)
            args.out.write_text(json.dumps(state, indent=2))
            print(
                f"  {LABELS[reward]:22s} seed {seed}: held-out EX {res['ex']:.3f}  "
                f"turns {res['mean_turns']:.2f}  zero-std groups {res['frac_zero_std_groups']:.2f}  "
                f"({res['train_seconds']:.0f} s)",
                flush=True,
            )
    report(state, plot=args.out.with_suffix(".png"))
    print(f"total {time.perf_counter() - t_all:.0f} s", file=sys.stderr)


def report(state: dict, plot: Path | None = None) -> None:
    by = {}
    for r in state["runs"]:
        by.setdefault(r["reward"], []).append(r)
    base = statistics.fmean(r["ex"] for r in by["binary"]) if "binary" in by else float("nan")
    print(f"\nheld-out EX after SFT only: {state['sft']['ex']:.3f} (n={state['n_test']})")
    for k in REWARDS:
        if k not in by:
            continue
        xs = [r["ex"] for r in by[k]]
        m = statistics.fmean(xs)
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        zs = statistics.fmean(r["frac_zero_std_groups"] for r in by[k])
        turns = statistics.fmean(r["mean_turns"] for r in by[k])
        reg = statistics.fmean(r["regression_frac"] for r in by[k])
        tex = statistics.fmean(r["train_binary_ex_mean"] for r in by[k])
        ratio = m / base if base else float("nan")
        print(
            f"{LABELS[k]:22s} held-out EX {m:.3f} ± {sd:.3f} (seeds {len(xs)})  ratio to binary {ratio:.3f}x  "
            f"zero-std groups {zs:.2f}  turns {turns:.2f}  regressions {reg:.3f}  "
            f"train-rollout EX {tex:.3f}"
        )

    if plot is not None:
        write_plot(by, state, plot)


def write_plot(by: dict, state: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    keys = [k for k in REWARDS if k in by]
    means = [statistics.fmean(r["ex"] for r in by[k]) for k in keys]
    sds = [statistics.stdev([r["ex"] for r in by[k]]) if len(by[k]) > 1 else 0.0 for k in keys]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([LABELS[k] for k in keys], means, yerr=sds, capsize=4, color="#4c72b0")
    ax.axhline(state["sft"]["ex"], color="gray", ls="--", label="SFT warm start")
    ax.set_ylabel("held-out EX")
    ax.set_title("GRPO reward ablation (synthetic suite, 3 seeds)")
    ax.legend()
    plt.xticks(rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
