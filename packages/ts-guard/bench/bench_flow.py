"""TS-Flow in AgentDojo (suites v1.2.2, offline): ASR and utility under attack for modes none / abort /
feedback, with a noisy-oracle guard (flip 0.1) and the rule guard (argument provenance).

The agent is a scripted stochastic one (no LLM): it follows the user task's ground-truth calls, follows the
important_instructions injection with probability q_follow=0.6 once it has read it, and after guard feedback
returns to the user task with probability q_recover=0.8. Utility and attack success come from AgentDojo's own
task checkers. Paired design: the same episode seeds for every mode.

    python bench/bench_flow.py --per-suite 30 --seeds 0 1 2
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from papercore.machine import bench_parser, machine_info

CONFIGS = [
    ("none", None),
    ("abort", "oracle"),
    ("feedback", "oracle"),
    ("abort", "rule"),
    ("feedback", "rule"),
]


def main() -> None:
    p = bench_parser(__doc__, Path(__file__).parent / "results" / "flow.json")
    p.add_argument("--per-suite", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    warnings.simplefilter("ignore")
    from agentdojo_world import load_pairs, run_episode

    t0 = time.time()
    pairs = load_pairs(args.per_suite, seed=0)
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for mode, guard in CONFIGS:
            key = f"{mode}/{guard or '-'}"
            eps = [run_episode(pair, mode, guard, seed) for pair in pairs]
            runs.setdefault(key, []).append(
                {
                    "seed": seed,
                    "asr": sum(e["asr"] for e in eps) / len(eps),
                    "utility": sum(e["utility"] for e in eps) / len(eps),
                }
            )
        # utility without attack (reference ceiling of the scripted agent), no guard
        eps = [run_episode(pair, "none", None, seed, attack=False) for pair in pairs]
        runs.setdefault("no-attack/-", []).append(
            {"seed": seed, "asr": 0.0, "utility": sum(e["utility"] for e in eps) / len(eps)}
        )

    def agg(key: str, metric: str) -> tuple[float, float]:
        vals = [r[metric] for r in runs[key]]
        return statistics.mean(vals), statistics.pstdev(vals)

    summary = {}
    for key in runs:
        summary[key] = {
            m: dict(zip(("mean", "sd"), agg(key, m), strict=False)) for m in ("asr", "utility")
        }
    claims = {}
    for g in ("oracle", "rule"):
        ratio = [
            f["asr"] / n["asr"] if n["asr"] else float("nan")
            for f, n in zip(runs[f"feedback/{g}"], runs["none/-"], strict=False)
        ]
        du = [
            f["utility"] - a["utility"]
            for f, a in zip(runs[f"feedback/{g}"], runs[f"abort/{g}"], strict=False)
        ]
        claims[g] = {
            "asr_ratio_feedback_over_none": {
                "mean": statistics.mean(ratio),
                "sd": statistics.pstdev(ratio),
            },
            "utility_feedback_minus_abort": {
                "mean": statistics.mean(du),
                "sd": statistics.pstdev(du),
            },
            "goal_asr_ratio_le_0.35": statistics.mean(ratio) <= 0.35,
            "goal_utility_feedback_gt_abort": statistics.mean(du) > 0,
        }
    out = {
        "machine": machine_info(),
        "data": f"AgentDojo v1.2.2 suites {sorted({p.suite for p in pairs})}, {len(pairs)} (user, injection) pairs, important_instructions",
        "agent": "scripted stochastic (q_follow=0.6, q_recover=0.8)",
        "seeds": args.seeds,
        "runs": runs,
        "summary": summary,
        "claims": claims,
        "seconds": time.time() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    base = summary["none/-"]
    print(f"{out['data']}; {out['agent']}; seeds {args.seeds}; {out['machine']}")
    print(f"{'config':<16} {'ASR':>15} {'ASR/none':>9} {'utility':>15} {'util/none':>9}")
    for key, s in summary.items():
        ra = s["asr"]["mean"] / base["asr"]["mean"] if base["asr"]["mean"] else float("nan")
        ru = (
            s["utility"]["mean"] / base["utility"]["mean"]
            if base["utility"]["mean"]
            else float("nan")
        )
        print(
            f"{key:<16} {s['asr']['mean']:.3f} ± {s['asr']['sd']:.3f} {ra:>9.2f} {s['utility']['mean']:.3f} ± {s['utility']['sd']:.3f} {ru:>9.2f}"
        )
    for g, c in claims.items():
        print(
            f"[{g}] ASR(feedback)/ASR(none) = {c['asr_ratio_feedback_over_none']['mean']:.3f} (goal <= 0.35: {c['goal_asr_ratio_le_0.35']}); "
            f"utility(feedback) - utility(abort) = {c['utility_feedback_minus_abort']['mean']:+.3f} (goal > 0: {c['goal_utility_feedback_gt_abort']})"
        )
    print(f"{out['seconds']:.0f} s")


main()
