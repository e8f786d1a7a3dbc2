"""Sequential A → B lookup-table tasks on a tiny MLP: plain, random, static, EPI, tiny replay.

Grid: conflict ∈ {0.5, 1}, isolation ratio p ∈ {0.3, 0.5}, seeds 0–2, plus p = 0.01 (the paper's ratio) at
conflict 1. Metric: mean old-task (A) accuracy measured every 10 steps during B; new-task (B) accuracy at
the end. Goal per (conflict, p): EPI/static > 1 and EPI/random > 1 on ≥ 2 of 3 seeds, with EPI's new-task
accuracy ≥ 0.95 × plain's. Writes results JSON and the successive-mask Jaccard curve (PNG).

    uv run --all-packages --all-extras python packages/epi/bench/bench_sequential.py
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    from papercore.machine import bench_parser, machine_info

    p = bench_parser(__doc__, HERE / "results" / "sequential.json")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--plot", type=Path, default=HERE / "results" / "jaccard.png")
    args = p.parse_args()

    import torch

    from epi.miniature import METHODS, SequentialSettings, run_sequential

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    grid = [(c, r) for c in (0.5, 1.0) for r in (0.3, 0.5)] + [(1.0, 0.01)]
    runs = []
    for conflict, ratio in grid:
        s = replace(SequentialSettings(), conflict=conflict, isolation_ratio=ratio)
        for seed in range(args.seeds):
            for m in METHODS:
                runs.append(run_sequential(m, s, seed))
    summary = []
    print(f"machine: {machine_info(1)}")
    print("model: LookupMLP (task emb 16 + key emb 32 → 128 → 32 values), AdamW lr 3e-3 wd 0.01")
    print(
        "data: 64 A keys → random values, then 64 B keys (fraction `conflict` = A keys with new values)"
    )
    print(
        f"{'conflict':>8} {'p':>5} {'method':>14} {'old acc during B (mean±sd)':>28} {'new acc':>8} "
        f"{'EPI/x per seed':>24}"
    )
    for conflict, ratio in grid:
        rows = [
            r
            for r in runs
            if r["settings"]["conflict"] == conflict and r["settings"]["isolation_ratio"] == ratio
        ]
        by = {
            m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
            for m in METHODS
        }
        old = {m: [r["mean_old_acc_during_b"] for r in by[m]] for m in METHODS}
        new = {m: [r["final_new_acc"] for r in by[m]] for m in METHODS}
        ratios = {
            m: [e / b if b > 0 else float("inf") for e, b in zip(old["epi"], old[m], strict=True)]
            for m in METHODS
        }
        wins_static = sum(x > 1 for x in ratios["static"])
        wins_random = sum(x > 1 for x in ratios["random"])
        new_ok = statistics.mean(new["epi"]) >= 0.95 * statistics.mean(new["plain"])
        need = (2 * args.seeds + 2) // 3  # ≥ 2 of 3
        held = wins_static >= need and wins_random >= need and new_ok
        for m in METHODS:
            sd = statistics.stdev(old[m]) if len(old[m]) > 1 else 0.0
            rs = " ".join(f"{x:.2f}" for x in ratios[m]) if m != "epi" else ""
            print(
                f"{conflict:>8} {ratio:>5} {m:>14} {statistics.mean(old[m]):>20.3f} ± {sd:.3f} "
                f"{statistics.mean(new[m]):>8.3f} {rs:>24}"
            )
        gain = statistics.mean(old["epi"]) - statistics.mean(old["plain"])
        sd_plain = statistics.stdev(old["plain"]) if len(old["plain"]) > 1 else 0.0
        print(f"  EPI − plain = {gain:+.3f} old-task accuracy (seed sd of plain {sd_plain:.3f})")
        print(
            f"  goal (EPI/static>1 on {wins_static}/{args.seeds}, EPI/random>1 on {wins_random}/{args.seeds}, new acc "
            f"{statistics.mean(new['epi']):.3f} vs 0.95×plain {0.95 * statistics.mean(new['plain']):.3f}): "
            f"{'HELD' if held else 'NOT HELD'}"
        )
        summary.append(
            {
                "conflict": conflict,
                "isolation_ratio": ratio,
                "old_acc_mean": {m: statistics.mean(old[m]) for m in METHODS},
                "old_acc_sd": {
                    m: statistics.stdev(old[m]) if len(old[m]) > 1 else 0.0 for m in METHODS
                },
                "new_acc_mean": {m: statistics.mean(new[m]) for m in METHODS},
                "epi_ratio_per_seed": {m: ratios[m] for m in METHODS if m != "epi"},
                "wins_vs_static": wins_static,
                "wins_vs_random": wins_random,
                "new_acc_ok": new_ok,
                "goal_held": held,
                "epi_minus_plain": gain,
            }
        )
    seconds = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": machine_info(1), "seconds": seconds, "summary": summary, "runs": runs},
            indent=1,
        )
    )
    _plot(runs, args.plot)
    print(f"wrote {args.out} and {args.plot} in {seconds:.0f} s")


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for conflict, ratio, style in [
        (1.0, 0.3, "-"),
        (1.0, 0.5, "--"),
        (0.5, 0.3, ":"),
        (1.0, 0.01, "-."),
    ]:
        rows = [
            r
            for r in runs
            if r["method"] == "epi"
            and r["settings"]["conflict"] == conflict
            and r["settings"]["isolation_ratio"] == ratio
        ]
        if not rows:
            continue
        n = min(len(r["jaccard"]) for r in rows)
        mean = [sum(r["jaccard"][i] for r in rows) / len(rows) for i in range(n)]
        every = rows[0]["settings"]["update_interval"]
        ax.plot(
            [every * (i + 1) for i in range(n)],
            mean,
            style,
            label=f"conflict {conflict}, p={ratio}",
        )
    ax.set_xlabel("step of task B")
    ax.set_ylabel("Jaccard(M_t, M_{t-1})")
    ax.set_title("EPI: successive-mask overlap during B (mean of 3 seeds)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
