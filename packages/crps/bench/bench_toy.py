"""CRPS miniature on CPU: does N CRPS examples train a student as well as 10·N rejection-sampling ones?

Toy domain (crps_synth.toy): grammar-generated mod-10 chains with traps; MCTS over a stochastic step
program; a rule-based analyst (deterministic diff locates the pivot, the synthesizer writes the
solution with an explicit check at the pivot). Students: tiny Llama (from config, word-level
tokenizer, TRL SFTTrainer, one torch thread, same steps budget) on

  crps          N CRPS examples             rs      10·N rejection-sampling examples
  rewrite       N τ+ rewrites (no analysis) random_pivot  N paths with the check at a random step
  oracle        10·N solver solutions with a check at every trap (data ceiling)

Exact match of the greedy boxed answer on 100 held-out problems of the training length (in-domain)
and on longer chains (out-of-template); chance = 0.1. Seeds 0, 1, 2 and crps, rs, random_pivot,
rewrite by default; run seeds as separate processes (``--seeds S --out ...seedS.json``) and combine
them with ``--merge`` (see the package README for the exact commands).

Goal (issue 18): acc(crps, N) / acc(rs, 10N) ≥ 0.95 in-domain, and crps > random_pivot in- and
out-of-template.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from crps_synth.experiment import CHANCE, METHODS, ToyExperimentConfig, run_seed
from papercore.machine import bench_parser, machine_info

HERE = Path(__file__).parent
#: the baseline must beat chance by this much (in-domain EM) for the ratio to be a claim
MIN_GAIN_OVER_CHANCE = 0.05

BENCH_CONFIG = ToyExperimentConfig(
    n_problems=120,
    n_eval=100,
    min_ops=2,
    max_ops=4,
    ood_min_ops=5,
    ood_max_ops=6,
    steps=600,
    batch_size=16,
    lr=3e-3,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
)


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    names = [m for r in runs for m in r["methods"]]
    for m in dict.fromkeys(names):
        have = [r for r in runs if m in r["methods"]]
        for split in ("acc_in", "acc_ood"):
            vals = [r["methods"][m][split] for r in have]
            out.setdefault(m, {})[split] = {
                "mean": statistics.mean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "values": vals,
            }
        out[m]["n_train"] = [r["methods"][m]["n_train"] for r in have]
        out[m]["seeds"] = [r["seed"] for r in have]
    claims = {}
    if "crps" in out and "rs" in out:
        both = [r for r in runs if {"crps", "rs"} <= set(r["methods"])]
        ratios = [
            r["methods"]["crps"]["acc_in"] / max(r["methods"]["rs"]["acc_in"], 1e-9) for r in both
        ]
        claims["ratio_in_crps_over_rs10N"] = {
            "seeds": [r["seed"] for r in both],
            "per_seed": ratios,
            "mean": statistics.mean(ratios) if ratios else None,
        }
        claims["ratio_in_holds(>=0.95)"] = (
            out["crps"]["acc_in"]["mean"] / max(out["rs"]["acc_in"]["mean"], 1e-9) >= 0.95
        )
    if "crps" in out and "random_pivot" in out:
        for split in ("acc_in", "acc_ood"):
            wins = [
                r["methods"]["crps"][split] > r["methods"]["random_pivot"][split]
                for r in runs
                if {"crps", "random_pivot"} <= set(r["methods"])
            ]
            claims[f"crps_beats_random_pivot_{split}"] = {
                "seeds_won": f"{sum(wins)}/{len(wins)}",
                "mean_diff": out["crps"][split]["mean"] - out["random_pivot"][split]["mean"],
                "holds": out["crps"][split]["mean"] > out["random_pivot"][split]["mean"]
                and sum(wins) > len(wins) / 2,
            }
    if "rs" in out:
        gain = out["rs"]["acc_in"]["mean"] - CHANCE
        claims["rs_beats_chance_by_0.05"] = gain >= MIN_GAIN_OVER_CHANCE
        if gain < MIN_GAIN_OVER_CHANCE:
            claims["verdict"] = (
                "pipeline check, not a claim: the RS baseline does not beat chance by "
                f"{MIN_GAIN_OVER_CHANCE}, so ratios to it say nothing about the method"
            )
    return {"per_method": out, "claims": claims}


def table(summary: dict) -> str:
    pm = summary["per_method"]
    rs_in = pm.get("rs", {}).get("acc_in", {}).get("mean")
    lines = [
        "| student | seeds | train examples | in-domain EM (mean ± sd) | out-of-template EM (mean ± sd) | in-domain ratio to RS 10N |",
        "|---|---|---|---|---|---|",
    ]
    for m, v in pm.items():
        ratio = f"{v['acc_in']['mean'] / rs_in:.2f}" if rs_in else "—"
        n = "/".join(str(x) for x in sorted(set(v["n_train"])))
        lines.append(
            f"| {m} | {len(v['seeds'])} | {n} | {v['acc_in']['mean']:.3f} ± {v['acc_in']['sd']:.3f} | "
            f"{v['acc_ood']['mean']:.3f} ± {v['acc_ood']['sd']:.3f} | {ratio} |"
        )
    lines.append(f"| chance (floor) | — | — | {CHANCE:.3f} | {CHANCE:.3f} | — |")
    return "\n".join(lines)


def write_result(runs: list[dict], cfg: dict, machine: str, seconds: float, out: Path) -> dict:
    summary = summarize(runs)
    result = {
        "machine": machine,
        "model": f"tiny Llama from config (hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers), "
        "word-level tokenizer, TRL SFTTrainer",
        "data": "crps_synth.toy grammar (mod-10 chains with traps)",
        "config": cfg,
        "seconds": seconds,
        "runs": runs,
        "summary": summary,
        "table": table(summary),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(machine)
    print(result["table"])
    print(json.dumps(summary["claims"], indent=2))
    return result


def merge(paths: list[Path], out: Path) -> None:
    parts = [json.loads(p.read_text()) for p in paths]
    cfgs = {json.dumps(p["config"], sort_keys=True) for p in parts}
    if len(cfgs) != 1:
        raise SystemExit(f"cannot merge runs with different configs: {sorted(cfgs)}")
    by_seed: dict[int, dict] = {}
    for r in (r for p in parts for r in p["runs"]):  # one seed may be split over several files
        cur = by_seed.setdefault(r["seed"], {**r, "methods": {}})
        clash = set(cur["methods"]) & set(r["methods"])
        if clash:
            raise SystemExit(
                f"seed {r['seed']}: methods {sorted(clash)} appear in two merged files"
            )
        cur["methods"].update(r["methods"])
    runs = [by_seed[k] for k in sorted(by_seed)]
    machine = parts[0]["machine"] + f"; {len(parts)} seed processes run side by side"
    write_result(runs, parts[0]["config"], machine, max(p.get("seconds", 0.0) for p in parts), out)


def main() -> None:
    p = bench_parser(__doc__, HERE / "results" / "bench_toy.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--methods", nargs="+", default=[m for m in METHODS if m != "oracle"]
    )  # order = run order
    p.add_argument("--steps", type=int, default=BENCH_CONFIG.steps)
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine result JSONs of separate seed runs (same config) into --out; trains nothing",
    )
    args = p.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in (
        "transformers",
        "httpx",
        "datasets",
        "crps_synth.export",
        "crps_synth.pipeline",
        "crps_synth.critique",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()
    cfg = ToyExperimentConfig(**{**asdict(BENCH_CONFIG), "steps": args.steps})
    t0 = time.perf_counter()
    runs = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save_partial(current: dict) -> None:  # after every student: a killed run keeps its numbers
        partial = {
            "machine": machine_info(1),
            "config": asdict(cfg),
            "runs": [*runs, current],
            "seconds": time.perf_counter() - t0,
            "partial": True,
        }
        args.out.write_text(json.dumps(partial, indent=2))

    for seed in args.seeds:
        runs.append(run_seed(cfg, seed, tuple(args.methods), on_method=save_partial))
    write_result(runs, asdict(cfg), machine_info(1), time.perf_counter() - t0, args.out)


if __name__ == "__main__":
    main()
