"""Bench 2 — the hybrid loss: the same MLP scorer trained with λ ∈ {0, 0.5, 1} on synthetic path groups.

Each group (one prompt) has N paths with a latent quality q = σ(1.5·a − d): a = the path's own
soundness, d = the prompt's difficulty. Training targets are Monte-Carlo estimates q̂ = (#successes
of K = 4 rollouts)/K. The scorer sees 16 features: noisy linear views of a and d plus a large
per-group nuisance offset that says nothing about quality (e.g. prompt length/style). Test metrics
(same MLP, same data, same steps; ScorerTrainer): best-of-N accuracy (the chosen path's sampled
correctness), within-group pairwise accuracy against q, and Brier of σ(s) vs q.

    python bench/loss_study.py --seeds 0 1 2          # → bench/results/loss_study.json
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from egrm_reward.losses import HybridRankRegLoss
from egrm_reward.metrics import best_of_n_accuracy, brier, pairwise_accuracy
from egrm_reward.scorer import PathScorer, PathScorerConfig
from egrm_reward.trainer import PathGroup, train_scorer
from papercore.machine import bench_parser, machine_info
from papercore.seeding import seed_everything, torch_threads

HERE = Path(__file__).parent
DIM, N, K = 16, 8, 4


def make_groups(n_groups: int, rng: np.random.Generator, mix: np.ndarray):
    groups, truth = [], []
    for g in range(n_groups):
        d = rng.normal()
        a = rng.normal(size=N)
        q = 1 / (1 + np.exp(-(1.5 * a - d)))
        q_hat = rng.binomial(K, q) / K
        y = rng.binomial(1, q)
        nuisance = rng.normal(scale=3.0)
        latent = np.stack([a, np.full(N, d), np.full(N, nuisance)], 1)  # [N, 3]
        x = latent @ mix + rng.normal(scale=0.5, size=(N, DIM))
        groups.append(
            PathGroup(f"g{g}", None, q_hat.tolist(), features=torch.tensor(x, dtype=torch.float32))
        )
        truth.append((q, y))
    return groups, truth


def run(seed: int, lam: float, train, test, truth, steps_epochs: float) -> dict[str, float]:
    seed_everything(seed)
    sc = PathScorer(PathScorerConfig(mode="mlp", feature_dim=DIM, hidden_dim=64))
    with tempfile.TemporaryDirectory() as tmp:
        train_scorer(
            sc,
            train,
            output_dir=tmp,
            loss=HybridRankRegLoss(lam=lam),
            epochs=steps_epochs,
            lr=3e-3,
            groups_per_batch=16,
            seed=seed,
        )
    with torch.no_grad():
        s = torch.cat([sc(features=g.features) for g in test]).numpy()
    q = np.concatenate([t[0] for t in truth])
    y = np.concatenate([t[1] for t in truth])
    gid = np.repeat(np.arange(len(test)), N)
    return {
        "best_of_n_acc": best_of_n_accuracy(s, y, gid),
        "best_of_n_expected": best_of_n_accuracy(s, q, gid),
        "pairwise_acc": pairwise_accuracy(s, q, gid),
        "brier": brier(s, q),
    }


def main() -> None:
    p = bench_parser(__doc__, HERE / "results" / "loss_study.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-groups", type=int, default=400)
    p.add_argument("--test-groups", type=int, default=1000)
    p.add_argument("--epochs", type=float, default=20)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    lams = (0.0, 0.5, 1.0)
    t0 = time.perf_counter()
    rows = {lam: [] for lam in lams}
    with torch_threads(1):
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            mix = rng.normal(size=(3, DIM))
            train, _ = make_groups(args.train_groups, rng, mix)
            test, truth = make_groups(args.test_groups, rng, mix)
            for lam in lams:
                r = run(seed, lam, train, test, truth, args.epochs)
                rows[lam].append(r)
                print(
                    f"seed {seed} λ={lam}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()),
                    flush=True,
                )
    keys = rows[lams[0]][0].keys()
    summary = {
        str(lam): {
            k: {
                "mean": float(np.mean([r[k] for r in rs])),
                "std": float(np.std([r[k] for r in rs])),
            }
            for k in keys
        }
        for lam, rs in rows.items()
    }
    best_bon = max(summary[str(lam)]["best_of_n_expected"]["mean"] for lam in lams)
    best_pair = max(summary[str(lam)]["pairwise_acc"]["mean"] for lam in lams)
    best_brier = min(summary[str(lam)]["brier"]["mean"] for lam in lams)
    mid = summary["0.5"]
    goal = {
        "bon_within_2pct_of_best": mid["best_of_n_expected"]["mean"] >= 0.98 * best_bon,
        "pairwise_within_2pct_of_best": mid["pairwise_acc"]["mean"] >= 0.98 * best_pair,
        "brier_ratio_to_best": mid["brier"]["mean"] / best_brier,
    }
    print()
    base = summary["1.0"]
    for lam in lams:
        s = summary[str(lam)]
        print(
            f"λ={lam}: best-of-{N} acc {s['best_of_n_acc']['mean']:.4f} (expected {s['best_of_n_expected']['mean']:.4f}, "
            f"×{s['best_of_n_expected']['mean'] / base['best_of_n_expected']['mean']:.3f} vs λ=1), "
            f"pairwise {s['pairwise_acc']['mean']:.4f} (×{s['pairwise_acc']['mean'] / base['pairwise_acc']['mean']:.3f}), "
            f"Brier {s['brier']['mean']:.4f} (×{s['brier']['mean'] / base['brier']['mean']:.3f})"
        )
    print("goal (λ=0.5 within 2% of the best on best-of-N and pairwise):", goal)
    res = {
        "bench": "loss_study",
        "machine": machine_info(1),
        "settings": {**vars(args), "out": str(args.out), "N": N, "K": K, "dim": DIM, "hidden": 64},
        "per_seed": {str(lam): rs for lam, rs in rows.items()},
        "summary": summary,
        "goal": goal,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
