"""Miniature reproduction (spec §4): GRPO with four rewards from one SFT warm start, held-out EX,
on episodes that really need several turns, with a fixed-turn control.

The suite is the synthetic one with ``template_set="lookup"`` (2 databases, 240 questions, ~25%
held out): every gold query uses a value the question does not state (an id, a category, a number),
so the agent must look it up with an exploration query, read it in the observation and answer.

* **multi-turn arm**: prompts are the lookup questions, ``max_turns=4``; the SFT warm start shows
  ``<sql>lookup</sql>`` → observation (one or two lookups) → ``<solution>answer</solution>``.
* **fixed-turn control**: the *same* gold queries asked with the looked-up value stated
  (``direct_question``), ``max_turns=1``: every episode has exactly one turn, so ATR's transition
  terms cannot act and only the per-answer part of each reward differs (rewards: binary, CSMR,
  ATR; Arctic is left out of the control to keep the run under 30 min).

One tiny Qwen2 (word-level tokenizer, ~0.3M parameters) is SFT'd on half of the training questions
in both forms, so it is partially right. Then GRPO runs with identical settings and seeds under
(a) binary EX, (b) Arctic 1/0.1/0, (c) CSMR on the final answer and (d) ATR over per-turn CSMR in
each arm; held-out EX (greedy) is reported per reward and arm over the seeds, with the ratio to
binary EX in the same arm and a per-seed paired verdict.

    OMP_NUM_THREADS=1 nice -n 10 uv run --all-packages --all-extras \\
        python packages/agentic-sql/bench/synthetic_ablation.py | tee .../synthetic_ablation.txt

Writes bench/results/synthetic_ablation.json (one entry per run, resumable; ``--report-only``
prints the table from it) and a plot. The SFT warm start is cached in bench/results/cache/.
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
ARMS = ("multi", "fixed")
ARM_LABELS = {"multi": "multi-turn (lookup, max 4 turns)", "fixed": "fixed-turn control (1 turn)"}
LABELS = {
    "binary": "(a) binary EX",
    "arctic": "(b) Arctic 1/0.1/0",
    "csmr": "(c) CSMR final-only",
    "atr": "(d) ATR+CSMR",
}

MODEL_KWARGS = {  # ~0.3M parameters with the word vocabulary: 21 GRPO runs fit the 30-min budget
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


def build_rows(questions: list[dict], root: Path) -> dict[str, list[dict]]:
    """Rows of both arms; compact prompts (table signatures + question) keep sequences short."""
    schemas: dict[str, str] = {}
    arms: dict[str, list[dict]] = {"multi": [], "fixed": []}
    for q in questions:
        db = q["db_id"]
        if db not in schemas:
            schemas[db] = compact_schema(root / db / f"{db}.sqlite")
        for arm, text in (("multi", q["question"]), ("fixed", q["direct_question"])):
            content = f"Tables: {schemas[db]}\n"
            if q["evidence"]:
                content += f"Hint: {q['evidence']}\n"
            content += f"Question: {text}"
            arms[arm].append(
                {
                    "prompt": [{"role": "user", "content": content}],
                    "db_id": db,
                    "gold_sql": q["SQL"],
                    "explore_queries": q["explore_queries"],
                    "split": q["split"],
                    "template": q["template"],
                }
            )
    return arms


def strip_row(r: dict) -> dict:
    return {k: r[k] for k in ("prompt", "db_id", "gold_sql")}


def sft_model(arms, factories, seed: int, steps: int) -> Path:
    """SFT on half of the training questions, each in both forms (2-turn lookup, 1-turn direct)."""
    from agentic_sql.train import trajectory_sft_pairs, warm_start_sft
    from papercore.testing.builders import build_word_tokenizer

    rng = random.Random(seed)
    idx = [i for i, r in enumerate(arms["multi"]) if r["split"] == "train"]
    chosen = sorted(rng.sample(idx, len(idx) // 2))
    texts = [r["prompt"][0]["content"] + " " + r["gold_sql"] + " " + " ".join(r["explore_queries"])
             for arm in ARMS for r in arms[arm]]  # fmt: skip
    # transformers' StopStringCriteria probes the vocabulary with the word "abcdef" and fails on a
    # word-level tokenizer that maps it to [UNK]: make it a known word
    words = ("abcdef",)
    tok0 = build_word_tokenizer(words, texts=texts)
    pairs = trajectory_sft_pairs(
        [strip_row(arms["multi"][i]) for i in chosen],
        [[*arms["multi"][i]["explore_queries"], arms["multi"][i]["gold_sql"]] for i in chosen],
        tok0,
        factories["multi"],
        protocol="text",
    )
    pairs += trajectory_sft_pairs(
        [strip_row(arms["fixed"][i]) for i in chosen],
        [[arms["fixed"][i]["gold_sql"]] for i in chosen],
        tok0,
        factories["fixed"],
        protocol="text",
    )
    tok = build_word_tokenizer(words, texts=[*texts, *(p + t for p, t in pairs)])
    return warm_start_sft(
        pairs,
        CACHE,
        steps=steps,
        batch_size=16,
        lr=3e-3,
        seed=seed,
        arch="qwen2",
        model_kwargs=MODEL_KWARGS,
        tokenizer=tok,
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
        [strip_row(r) for r in rows],
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
        "frac_multi_turn": sum(e.n_turns >= 2 for e in envs) / n,
        "regression_frac": sum(
            any(b < a for a, b in zip(e.turn_scores, e.turn_scores[1:], strict=False)) for e in envs
        )
        / n,
        "n": n,
    }


def grpo_run(arm, reward, seed, sft_dir, rows, root, factory, args) -> dict:
    from datasets import Dataset

    from agentic_sql.train import TrainConfig, build_trainer
    from papercore.models import load_model, load_tokenizer
    from papercore.seeding import seed_everything

    seed_everything(seed)
    tok, model = load_tokenizer(str(sft_dir)), load_model(str(sft_dir), dtype="float32")
    max_turns = args.max_turns if arm == "multi" else 1
    ds = Dataset.from_list([strip_row(r) for r in rows if r["split"] == "train"])
    cfg = TrainConfig(
        model=str(sft_dir),
        output_dir=str(CACHE / f"grpo-{arm}-{reward}-{seed}"),
        protocol="text",
        reward=reward,
        max_turns=max_turns,
        isolation="thread",
        max_new_tokens_per_turn=64,
        seed=seed,
        grpo={
            "max_steps": args.steps,
            "num_generations": args.G,
            "per_device_train_batch_size": args.G * args.prompts_per_step,
            "max_completion_length": 256,
            "learning_rate": args.lr,
            "beta": 0.0,
            "temperature": 1.0,
            "logging_steps": 1,
            "save_strategy": "no",
            "use_cpu": True,
            "bf16": False,
            "report_to": "none",
            "disable_tqdm": True,
        },
    )
    t0, c0 = time.perf_counter(), time.process_time()
    trainer = build_trainer(cfg, model=model, tokenizer=tok, train_dataset=ds, db_root=root)
    trainer.train()
    train_s = time.perf_counter() - t0
    hist = [h for h in trainer.state.log_history if "frac_reward_zero_std" in h]
    zero_std = statistics.fmean(h["frac_reward_zero_std"] for h in hist) if hist else float("nan")
    train_ex = statistics.fmean(h.get("rewards/binary_ex/mean", float("nan")) for h in hist)
    test_rows = [r for r in rows if r["split"] == "test"]
    res = evaluate(trainer.model, tok, test_rows, factory, max_turns)
    res.update(
        arm=arm,
        reward=reward,
        seed=seed,
        frac_zero_std_groups=zero_std,
        train_binary_ex_mean=train_ex,
        train_seconds=train_s,
        cpu_seconds=time.process_time() - c0,  # training + held-out eval, this process
    )
    trainer._agentic_sql_env_factory.close()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rewards", nargs="+", default=list(REWARDS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--control-rewards", nargs="+", default=["binary", "csmr", "atr"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--sft-steps", type=int, default=600)
    p.add_argument("--G", type=int, default=4)
    p.add_argument("--prompts-per-step", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-turns", type=int, default=4)
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
    t_all, c_all = time.perf_counter(), time.process_time()
    _, root = make_synthetic_task_suite(
        n_dbs=2, n_questions=240, seed=0, out_dir=CACHE / "suite-lookup", template_set="lookup"
    )
    questions = json.loads((Path(root) / "dev.json").read_text())
    arms = build_rows(questions, Path(root))
    factories = {
        "multi": make_environment_factory(
            root, isolation="thread", max_turns=args.max_turns, reward_kind="binary"
        ),
        "fixed": make_environment_factory(
            root, isolation="thread", max_turns=1, reward_kind="binary"
        ),
    }
    t0 = time.perf_counter()
    sft_dir = sft_model(arms, factories, seed=0, steps=args.sft_steps)
    print(f"SFT warm start: {sft_dir.name} ({time.perf_counter() - t0:.0f} s incl. cache lookup)",
          flush=True)  # fmt: skip

    from papercore.models import load_model, load_tokenizer

    state = json.loads(args.out.read_text()) if args.out.exists() and not args.fresh else {}
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("out", "fresh", "seeds", "rewards", "control_rewards", "arms", "report_only")
    }
    settings["suite"] = "lookup, 2 dbs, 240 questions, seed 0 (1 or 2 lookups per question)"
    if state.get("settings") != settings:
        state = {"settings": settings, "runs": []}
    if "sft" not in state:
        tok, model = load_tokenizer(str(sft_dir)), load_model(str(sft_dir), dtype="float32")
        state["sft"] = {}
        for arm in ARMS:
            test = [r for r in arms[arm] if r["split"] == "test"]
            mt = args.max_turns if arm == "multi" else 1
            state["sft"][arm] = evaluate(model, tok, test, factories[arm], mt)
        state["n_train"] = sum(r["split"] == "train" for r in arms["multi"])
        state["n_test"] = sum(r["split"] == "test" for r in arms["multi"])
        args.out.write_text(json.dumps(state, indent=2))
    for arm in ARMS:
        s = state["sft"][arm]
        print(
            f"SFT only, {arm}: held-out EX {s['ex']:.3f}  turns {s['mean_turns']:.2f}", flush=True
        )
    done = {(r["arm"], r["reward"], r["seed"]) for r in state["runs"]}
    # binary EX and ATR in both arms on every seed first (the comparison the verdict needs), then
    # the other rewards: on a shared CPU a run cut short still has the key numbers
    wanted = [
        (a, r) for a in args.arms for r in (args.rewards if a == "multi" else args.control_rewards)
    ]
    first = [(a, r) for a, r in wanted if r in ("binary", "atr")]
    order = [(s, a, r) for s in args.seeds for a, r in first]
    order += [(s, a, r) for s in args.seeds for a, r in wanted if (a, r) not in first]
    for seed, arm, reward in order:
        if (arm, reward, seed) in done:
            continue
        res = grpo_run(arm, reward, seed, sft_dir, arms[arm], root, factories[arm], args)
        state["runs"].append(res)
        args.out.write_text(json.dumps(state, indent=2))
        print(
            f"  {arm:5s} {LABELS[reward]:22s} seed {seed}: held-out EX {res['ex']:.3f}  "
            f"turns {res['mean_turns']:.2f}  zero-std groups "
            f"{res['frac_zero_std_groups']:.2f}  ({res['train_seconds']:.0f} s)",
            flush=True,
        )
    for f in factories.values():
        f.close()
    state["total_seconds"] = state.get("total_seconds", 0.0) + time.perf_counter() - t_all
    state["total_cpu_seconds"] = state.get("total_cpu_seconds", 0.0) + time.process_time() - c_all
    args.out.write_text(json.dumps(state, indent=2))
    report(state, plot=args.out.with_suffix(".png"))
    print(f"total {time.perf_counter() - t_all:.0f} s", file=sys.stderr)


def _paired(by: dict, a: str, b: str) -> tuple[int, int, int]:
    """Seeds where reward ``a`` beat / tied / lost to ``b`` (same seed, same arm)."""
    xa = {r["seed"]: r["ex"] for r in by.get(a, [])}
    xb = {r["seed"]: r["ex"] for r in by.get(b, [])}
    common = sorted(set(xa) & set(xb))
    return (
        sum(xa[s] > xb[s] for s in common),
        sum(xa[s] == xb[s] for s in common),
        sum(xa[s] < xb[s] for s in common),
    )


def report(state: dict, plot: Path | None = None) -> None:
    print(f"\nsuite: {state['settings'].get('suite')}; n_train={state['n_train']} "
          f"n_test={state['n_test']}; GRPO {state['settings']['steps']} steps, "
          f"G={state['settings']['G']}, lr={state['settings']['lr']}")  # fmt: skip
    verdicts = []
    for arm in ARMS:
        runs = [r for r in state["runs"] if r["arm"] == arm]
        if not runs:
            continue
        by: dict[str, list[dict]] = {}
        for r in runs:
            by.setdefault(r["reward"], []).append(r)
        sft = state["sft"][arm]
        print(f"\n[{ARM_LABELS[arm]}] SFT only: held-out EX {sft['ex']:.3f}, turns "
              f"{sft['mean_turns']:.2f}")  # fmt: skip
        base = statistics.fmean(r["ex"] for r in by["binary"]) if "binary" in by else float("nan")
        for k in REWARDS:
            if k not in by:
                continue
            xs = [r["ex"] for r in by[k]]
            m = statistics.fmean(xs)
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            ratio = m / base if base else float("nan")
            f = statistics.fmean
            print(
                f"{LABELS[k]:22s} held-out EX {m:.3f} ± {sd:.3f} (seeds {len(xs)}, range "
                f"{min(xs):.3f}-{max(xs):.3f})  ratio to binary {ratio:.3f}x  "
                f"turns {f(r['mean_turns'] for r in by[k]):.2f}  "
                f"multi-turn episodes {f(r.get('frac_multi_turn', 0.0) for r in by[k]):.2f}  "
                f"zero-std groups {f(r['frac_zero_std_groups'] for r in by[k]):.2f}  "
                f"train-rollout EX {f(r['train_binary_ex_mean'] for r in by[k]):.3f}"
            )
        if "atr" in by and "binary" in by:
            w, t, lo = _paired(by, "atr", "binary")
            n = w + t + lo
            if w == n:
                v = "ATR beat binary EX on every seed"
            elif lo == n:
                v = "ATR was worse than binary EX on every seed"
            else:
                v = "no consistent difference between ATR and binary EX"
            verdicts.append(f"{arm}: {v} (ATR better / tied / worse on {w}/{t}/{lo} seeds)")
    if "total_seconds" in state:
        print(f"\nwall time {state['total_seconds']:.0f} s, CPU time "
              f"{state.get('total_cpu_seconds', float('nan')):.0f} s (all invocations)")  # fmt: skip
    if verdicts:
        print("\nverdict (paired by seed):")
        for v in verdicts:
            print("  " + v)
    if plot is not None:
        write_plot(state, plot)


def write_plot(state: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, arm in zip(axes, ARMS, strict=True):
        by: dict[str, list[float]] = {}
        for r in state["runs"]:
            if r["arm"] == arm:
                by.setdefault(r["reward"], []).append(r["ex"])
        keys = [k for k in REWARDS if k in by]
        means = [statistics.fmean(by[k]) for k in keys]
        sds = [statistics.stdev(by[k]) if len(by[k]) > 1 else 0.0 for k in keys]
        ax.bar([LABELS[k] for k in keys], means, yerr=sds, capsize=4, color="#4c72b0")
        ax.axhline(state["sft"][arm]["ex"], color="gray", ls="--", label="SFT warm start")
        ax.set_title(ARM_LABELS[arm], fontsize=9)
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    axes[0].set_ylabel("held-out EX")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
