"""Bench 1 — the E-GRM pipeline on mod-10 arithmetic chains (k = 1…5), tiny trained generator, CPU.

Methods, on the same held-out items, same generator, same seed:
  direct-only          M = 5 direct samples, modal answer (never CoT)
  always-CoT + vote    N = 5 CoT paths, majority vote (self-consistency)
  always-CoT + scorer  N = 5 CoT paths, the best-scored path's answer
  E-GRM                consensus gate τ = 0.8 → CoT + scorer only when the 5 direct samples disagree
  random gate          the same pipeline with a random gate firing at E-GRM's measured trigger rate
                       (run once, plus a paired estimate averaged over 2,000 random subsets of the
                       direct-only / always-CoT+scorer results of this run)

Scorer: an MLP on frozen mean-pooled hidden states of the generator (PathScorer mode "mlp"), trained with
HybridRankRegLoss(λ = 0.5) on CoT paths sampled for a separate training split (target = the path
reaches the gold answer; the training paths are sampled hotter, T = 1.0…2.0, so that some go wrong).
Also reported: E-GRM with a majority vote instead of the scorer, and E-GRM at τ = 0.6 and τ = 1.0. Cost: generated tokens and decode steps (sequential steps: parallel samples
of one stage cost their longest), CPU seconds of this process (1 torch thread) and wall seconds.

    python bench/pipeline.py --generator bench/runs/generator-s0 --seeds 0 1 2
    python bench/pipeline.py --simulated --seeds 0 1 2       # the simulated generator (stated)
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from egrm_reward.arith import arith_egrm_config, cot_prompt, make_split
from egrm_reward.consensus import SamplingSchedule
from egrm_reward.extract import regex
from egrm_reward.losses import HybridRankRegLoss
from egrm_reward.pipeline import EfficientGRM
from egrm_reward.routing import RandomRouter
from egrm_reward.sampling import sample_schedule
from egrm_reward.scorer import PathScorer, PathScorerConfig
from egrm_reward.trainer import PathGroup, train_scorer
from papercore.generation import make_backend
from papercore.machine import bench_parser, machine_info
from papercore.seeding import seed_everything, torch_threads

HERE = Path(__file__).parent
METHODS = (
    "direct-only",
    "always-CoT + vote",
    "always-CoT + scorer",
    "E-GRM",
    "random gate",
    "E-GRM (vote)",
    "E-GRM τ=0.6",
    "E-GRM τ=1.0",
)
#: hotter sampling for the scorer's training paths, so that some paths go wrong and targets vary
TRAIN_SCHEDULE = SamplingSchedule((1.0, 1.25, 1.5, 1.75, 2.0), (1.0,) * 5, (0, 1, 2, 3, 4))


def train_path_scorer(backend, generator: str | None, seed: int, n_per_k: int, lam: float = 0.5):
    """Sample N CoT paths per training problem, label them by correctness, train the MLP scorer."""
    probs = make_split(n_per_k, seed=10_000 + seed)
    sched = TRAIN_SCHEDULE
    comps = sample_schedule(
        backend,
        [[cot_prompt(p) for p in probs]] * sched.m,
        sched,
        max_new_tokens=40,
        base_seed=seed + 99,
    )
    ex = regex(r"ans=(\d)")
    groups = []
    for p, cs in zip(probs, comps, strict=True):
        groups.append(
            PathGroup(
                cot_prompt(p), [c.text for c in cs], [float(ex(c.text) == p.answer) for c in cs]
            )
        )
    frac = float(np.mean([t for g in groups for t in g.targets]))
    if generator is None:
        return None, {"train_path_accuracy": frac}
    sc = PathScorer(PathScorerConfig(mode="mlp", backbone=generator, hidden_dim=64, max_length=96))
    # precompute frozen features once: the trainer then only runs the MLP
    for g in groups:
        enc = sc.encode([g.prompt] * len(g.paths), g.paths)
        g.features = sc.features(enc["input_ids"], enc["attention_mask"])
    with tempfile.TemporaryDirectory() as tmp:
        train_scorer(
            sc,
            groups,
            output_dir=tmp,
            loss=HybridRankRegLoss(lam=lam),
            epochs=30,
            lr=2e-3,
            groups_per_batch=16,
            seed=seed,
        )
    return sc, {"train_path_accuracy": frac, "train_groups": len(groups)}


def run_method(grm: EfficientGRM, items: list[dict], problems) -> dict[str, Any]:
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    res = grm(items)
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    correct = [r.answer == p.answer for r, p in zip(res, problems, strict=True)]
    by_k: dict[int, list] = defaultdict(list)
    trig_k: dict[int, list] = defaultdict(list)
    for r, p, c in zip(res, problems, correct, strict=True):
        by_k[p.k].append(c)
        trig_k[p.k].append(r.route.value == "long")
    return {
        "accuracy": float(np.mean(correct)),
        "accuracy_by_k": {k: float(np.mean(v)) for k, v in sorted(by_k.items())},
        "trigger_rate": float(np.mean([r.route.value == "long" for r in res])),
        "trigger_rate_by_k": {k: float(np.mean(v)) for k, v in sorted(trig_k.items())},
        "generated_tokens": int(sum(r.cost.generated_tokens for r in res)),
        "decode_steps": int(sum(r.cost.decode_steps for r in res)),
        "scorer_tokens": int(sum(r.cost.n_scorer_tokens for r in res)),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "_results": res,
        "_correct": correct,
    }


def paired_random_gate(direct, cot, rate: float, seed: int, draws: int = 2000) -> dict[str, float]:
    """Random subsets of size rate·n take the always-CoT+scorer answer, the rest the direct answer."""
    n = len(direct["_correct"])
    m = round(rate * n)
    rng = np.random.default_rng(seed)
    dc, cc = np.array(direct["_correct"], float), np.array(cot["_correct"], float)
    ctok = np.array([r.cost.n_cot_tokens for r in cot["_results"]])
    accs, toks = [], []
    for _ in range(draws):
        s = np.zeros(n, bool)
        s[rng.choice(n, m, replace=False)] = True
        accs.append(float(np.where(s, cc, dc).mean()))
        toks.append(direct["generated_tokens"] + int(ctok[s].sum()))
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "generated_tokens": float(np.mean(toks)),
    }


def main() -> None:
    p = bench_parser(__doc__, HERE / "results" / "pipeline.json")
    p.add_argument("--generator", type=Path, default=HERE / "runs" / "generator-s0")
    p.add_argument(
        "--simulated", action="store_true", help="use the simulated generator (no scorer training)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--test-per-k", type=int, default=40)
    p.add_argument("--train-per-k", type=int, default=40)
    p.add_argument("--tau", type=float, default=0.8)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    per_seed = []
    with torch_threads(1):
        if args.simulated:
            from egrm_reward.simulate import SimulatedArithBackend

            backend, gen = SimulatedArithBackend(), None
        else:
            backend, gen = (
                make_backend("transformers", model=str(args.generator), batch_size=100),
                str(args.generator),
            )
        for seed in args.seeds:
            seed_everything(seed)
            scorer, sc_info = train_path_scorer(backend, gen, seed, args.train_per_k)
            agg = "argmax" if scorer is not None else "vote"
            problems = make_split(args.test_per_k, seed=20_000 + seed)
            items = [{"prompt": q.prompt} for q in problems]
            cfg = dict(seed=seed, tau=args.tau)
            rows: dict[str, Any] = {}
            rows["direct-only"] = run_method(
                EfficientGRM(backend, config=arith_egrm_config(never_cot=True, **cfg)),
                items,
                problems,
            )
            rows["always-CoT + vote"] = run_method(
                EfficientGRM(
                    backend, config=arith_egrm_config(always_cot=True, aggregation="vote", **cfg)
                ),
                items,
                problems,
            )
            rows["always-CoT + scorer"] = run_method(
                EfficientGRM(
                    backend, scorer, arith_egrm_config(always_cot=True, aggregation=agg, **cfg)
                ),
                items,
                problems,
            )
            rows["E-GRM"] = run_method(
                EfficientGRM(backend, scorer, arith_egrm_config(aggregation=agg, **cfg)),
                items,
                problems,
            )
            rate = rows["E-GRM"]["trigger_rate"]
            rows["random gate"] = run_method(
                EfficientGRM(
                    backend,
                    scorer,
                    arith_egrm_config(aggregation=agg, **cfg),
                    router=RandomRouter(rate, seed=seed),
                ),
                items,
                problems,
            )
            rows["E-GRM (vote)"] = run_method(
                EfficientGRM(backend, config=arith_egrm_config(aggregation="vote", **cfg)),
                items,
                problems,
            )
            for t in (0.6, 1.0):
                rows[f"E-GRM τ={t}"] = run_method(
                    EfficientGRM(
                        backend, scorer, arith_egrm_config(aggregation=agg, seed=seed, tau=t)
                    ),
                    items,
                    problems,
                )
            paired = paired_random_gate(
                rows["direct-only"], rows["always-CoT + scorer"], rate, seed
            )
            base = rows["always-CoT + vote"]
            print(f"seed {seed}: scorer {sc_info}", flush=True)
            for m in METHODS:
                r = rows[m]
                print(
                    f"  {m:20s} acc {r['accuracy']:.3f}  trigger {r['trigger_rate']:.2f}  tokens {r['generated_tokens']:6d} "
                    f"(×{r['generated_tokens'] / base['generated_tokens']:.2f})  steps {r['decode_steps']:6d} "
                    f"(×{r['decode_steps'] / base['decode_steps']:.2f})  cpu {r['cpu_s']:.1f}s (×{r['cpu_s'] / base['cpu_s']:.2f})",
                    flush=True,
                )
            print(
                f"  {'random gate (paired)':20s} acc {paired['accuracy']:.3f} ± {paired['accuracy_std']:.3f}",
                flush=True,
            )
            for r in rows.values():
                r.pop("_results"), r.pop("_correct")
            per_seed.append(
                {"seed": seed, "scorer": sc_info, "methods": rows, "random_gate_paired": paired}
            )
    summary = {}
    for m in METHODS:
        vals = [s["methods"][m] for s in per_seed]
        summary[m] = {
            k: {
                "mean": float(np.mean([v[k] for v in vals])),
                "std": float(np.std([v[k] for v in vals])),
            }
            for k in (
                "accuracy",
                "trigger_rate",
                "generated_tokens",
                "decode_steps",
                "cpu_s",
                "wall_s",
            )
        }
        summary[m]["accuracy_by_k"] = {
            k: float(np.mean([v["accuracy_by_k"][k] for v in vals]))
            for k in vals[0]["accuracy_by_k"]
        }
        summary[m]["trigger_rate_by_k"] = {
            k: float(np.mean([v["trigger_rate_by_k"][k] for v in vals]))
            for k in vals[0]["trigger_rate_by_k"]
        }
    paired_acc = float(np.mean([s["random_gate_paired"]["accuracy"] for s in per_seed]))
    e, v = summary["E-GRM"], summary["always-CoT + vote"]
    goal = {
        "egrm_acc_ge_vote_acc": e["accuracy"]["mean"] >= v["accuracy"]["mean"],
        "egrm_tokens_ratio_vs_vote": e["generated_tokens"]["mean"] / v["generated_tokens"]["mean"],
        "egrm_tokens_le_half": e["generated_tokens"]["mean"] <= 0.5 * v["generated_tokens"]["mean"],
        "gate_beats_random_run": e["accuracy"]["mean"] > summary["random gate"]["accuracy"]["mean"],
        "gate_beats_random_paired": e["accuracy"]["mean"] > paired_acc,
        "random_gate_paired_accuracy": paired_acc,
    }
    print("\nmean over seeds", args.seeds)
    for m in METHODS:
        s = summary[m]
        print(
            f"  {m:20s} acc {s['accuracy']['mean']:.3f} ± {s['accuracy']['std']:.3f}  trigger {s['trigger_rate']['mean']:.2f}  "
            f"tokens ×{s['generated_tokens']['mean'] / v['generated_tokens']['mean']:.2f}  "
            f"steps ×{s['decode_steps']['mean'] / v['decode_steps']['mean']:.2f}  cpu ×{s['cpu_s']['mean'] / v['cpu_s']['mean']:.2f}"
        )
    print("goal:", goal)
    res = {
        "bench": "pipeline",
        "generator": "simulated" if args.simulated else str(args.generator),
        "machine": machine_info(1),
        "settings": {k: (str(x) if isinstance(x, Path) else x) for k, x in vars(args).items()},
        "per_seed": per_seed,
        "summary": summary,
        "goal": goal,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
