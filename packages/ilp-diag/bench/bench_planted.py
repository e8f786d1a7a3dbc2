"""Planted-cause bench (issue 19): a tiny pre-trained Llama, two SFT stages at a fixed budget, ILP detection,
cause attribution against the planted ground truth, and a mitigation vs an equal-compute random control.

Per seed: build the synthetic world (``ilp_diag.synthetic``), pre-train a tiny Llama on the F_pre facts
(``papercore.testing.train_tiny_lm``, word-level tokenizer, one torch thread), run SFT stage 0 then stage 1
with TRL ``SFTTrainer`` and a ``LossTrajectoryCallback``, detect (graded, n samples at T) and diagnose.
Gates: controls learned ≥ 0.95, base knows F_pre ≥ 0.8. Reports per-group unlearned rate / controls' rate,
the confusion matrix (planted group × primary cause), macro-F1 on C1/C2/C5 vs the empirical-prior baseline,
and the C5 mitigation (loss-proportional resampling of stage 1) vs random re-weighting at equal compute.

Writes JSON to bench/results/; ``--table`` prints the README table from a results JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ilp_diag import (
    DiagnosisConfig,
    DynamicResamplingSampler,
    ExactMatchJudge,
    ILPDiagnoser,
    LossTrajectoryCallback,
    evaluate_intervention,
    loss_weights,
    sft_train,
    snapshot_model,
)
from ilp_diag.synthetic import GROUPS, WorldPretrainTask, build_world
from papercore.machine import bench_parser, machine_info
from papercore.models import load_model
from papercore.seeding import seed_everything, torch_threads
from papercore.testing.training import TrainSettings, greedy_accuracy, train_tiny_lm

logger = logging.getLogger("bench_planted")
HERE = Path(__file__).parent
PLANTED = {
    "C1": "missing_knowledge",
    "C2": "knowledge_conflict",
    "C3": "data_inconsistency",
    "C4": "left_side_forgetting",
    "C5": "under_optimization",
}


def macro_f1(true: list[str], pred: list[str], labels: list[str]) -> float:
    f1s = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(true, pred, strict=True))
        fp = sum(t != lab and p == lab for t, p in zip(true, pred, strict=True))
        fn = sum(t == lab and p != lab for t, p in zip(true, pred, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def prior_baseline_f1(
    true: list[str], pred: list[str], labels: list[str], seed: int, draws: int = 200
) -> float:
    """Mean macro-F1 of random cause assignment drawn from the diagnoser's empirical cause prior."""
    rng = np.random.default_rng(seed)
    vals, counts = np.unique(pred, return_counts=True)
    p = counts / counts.sum()
    return float(
        np.mean(
            [
                macro_f1(true, list(rng.choice(vals, size=len(true), p=p)), labels)
                for _ in range(draws)
            ]
        )
    )


def run_seed(seed: int, a) -> dict:
    t0 = time.time()
    world = build_world(seed, n_stage0_controls=0)
    tok = world.tokenizer()
    base_dir = train_tiny_lm(
        WorldPretrainTask(world),
        cache_dir=a.cache_dir,
        tokenizer=tok,
        settings=TrainSettings(steps=a.pretrain_steps, lr=3e-3, seed=seed),
        model_kwargs=dict(
            hidden_size=a.hidden, num_hidden_layers=2, intermediate_size=2 * a.hidden
        ),
        threads=1,
    )
    base = load_model(str(base_dir))
    fpre = greedy_accuracy(base, tok, world.fpre_probe)
    recs = world.records
    stage0 = [r for r in recs if r.stage_id == 0]
    stage1 = [r for r in recs if r.stage_id == 1]
    sft = load_model(str(base_dir)).train()
    cb = LossTrajectoryCallback(recs, tok, every_k_steps=a.probe_every, stage_id=0)
    seed_everything(seed)
    sft_train(
        sft,
        tok,
        stage0,
        epochs=a.epochs0,
        lr=a.lr,
        batch_size=a.batch_size,
        seed=seed,
        callbacks=[cb],
    )
    ckpt0 = snapshot_model(sft)  # not copy.deepcopy: see snapshot_model
    cb.stage_id = 1
    sft_train(
        sft,
        tok,
        stage1,
        epochs=a.epochs1,
        lr=a.lr,
        batch_size=a.batch_size,
        seed=seed,
        callbacks=[cb],
    )
    t_train = time.time() - t0
    dg = ILPDiagnoser(
        base,
        sft,
        tok,
        ExactMatchJudge(),
        DiagnosisConfig(),
        embedder=a.embedder,
        n=a.n,
        temperature=a.temperature,
        seed=seed,
        batch_size=64,
    )
    log = cb.to_frame()
    signals = dg.collect_signals(recs, loss_log=log, stage_checkpoints={0: ckpt0})
    diag = dg.diagnose(signals)
    diag["group"] = diag["idx"].map(world.group)
    if a.dump_signals:
        diag.drop(columns=["causes"]).assign(causes=diag["causes"].map(",".join)).to_csv(
            a.out.with_suffix(f".seed{seed}.csv"), index=False
        )
    ctrl = diag[diag.group == "control"]
    ctrl_rate = float(ctrl.unlearned.mean())
    rates = {g: float(diag.loc[diag.group == g, "unlearned"].mean()) for g in GROUPS}
    ratio = {
        g: (
            rates[g] / ctrl_rate
            if ctrl_rate > 0
            else float("inf")
            if rates[g] > 0
            else float("nan")
        )
        for g in GROUPS[1:]
    }
    # pass@n rate for C3 (shows the criterion difference)
    passn_c3 = float((~diag.loc[diag.group == "C3", "pass_at_n"].astype(bool)).mean())
    U = diag[diag.unlearned & (diag.group != "control")]
    confusion = pd.crosstab(U["group"], U["primary_cause"]).to_dict()
    sub = U[U.group.isin(["C1", "C2", "C5"])]
    true = [PLANTED[g] for g in sub.group]
    pred = sub.primary_cause.tolist()
    labels = [PLANTED[g] for g in ("C1", "C2", "C5")]
    f1 = macro_f1(true, pred, labels) if len(sub) else float("nan")
    f1_prior = prior_baseline_f1(true, pred, labels, seed) if len(sub) else float("nan")
    all_true = [PLANTED[g] for g in U.group]
    f1_all = (
        macro_f1(all_true, U.primary_cause.tolist(), list(PLANTED.values()))
        if len(U)
        else float("nan")
    )
    # mitigation (C5): loss-proportional resampling of stage 1 vs the same weights shuffled (equal compute)
    targeted = [
        int(i) for i, cs in zip(diag.idx, diag.causes, strict=True) if "under_optimization" in cs
    ]
    mitig = {}
    if targeted and a.mitigate:
        last = log[log.step == log.step.max()].set_index("idx")["loss"]
        stage1_idx = [r.idx for r in stage1]
        w = loss_weights(last.loc[stage1_idx].to_numpy(), alpha=a.alpha, gamma=a.gamma)
        rng = np.random.default_rng(seed)
        runs = {}
        for name, weights in (("resample", w), ("random", rng.permutation(w))):
            m = snapshot_model(ckpt0).train()
            sampler = DynamicResamplingSampler(weights, seed=seed)
            sft_train(
                m,
                tok,
                stage1,
                epochs=a.epochs1,
                lr=a.lr,
                batch_size=a.batch_size,
                seed=seed,
                sampler=sampler,
            )
            runs[name] = dg.detect(recs, model=m)
        mitig = evaluate_intervention(
            diag, runs["resample"], targeted, control_after=runs["random"]
        )
    return {
        "seed": seed,
        "fpre_base_acc": fpre,
        "controls_learned": 1 - ctrl_rate,
        "gates_ok": bool(fpre >= 0.8 and 1 - ctrl_rate >= 0.95),
        "ilp_rate": float(diag.unlearned.mean()),
        "group_rates": rates,
        "ratio_to_controls": ratio,
        "c3_unlearned_pass_at_n": passn_c3,
        "confusion": confusion,
        "macro_f1_c125": f1,
        "macro_f1_prior": f1_prior,
        "macro_f1_all5": f1_all,
        "disabled_rules": diag.attrs.get("disabled_rules", {}),
        "thresholds": diag.attrs.get("thresholds", {}),
        "mitigation": mitig,
        "unlearned_idx": sorted(int(i) for i in diag.loc[diag.unlearned, "idx"]),
        "seconds": time.time() - t0,
        "seconds_train": t_train,
    }


def summarize(res: dict) -> dict:
    seeds = res["seeds"]

    def ms(vals):
        v = np.array([x for x in vals if x is not None and np.isfinite(x)], float)
        return {
            "mean": float(v.mean()) if len(v) else None,
            "std": float(v.std()) if len(v) else None,
            "n": len(v),
        }

    out = {
        "ratio_to_controls": {
            g: ms([s["ratio_to_controls"][g] for s in seeds]) for g in GROUPS[1:]
        },
        "group_rates": {g: ms([s["group_rates"][g] for s in seeds]) for g in GROUPS},
        "macro_f1_c125": ms([s["macro_f1_c125"] for s in seeds]),
        "macro_f1_prior": ms([s["macro_f1_prior"] for s in seeds]),
        "macro_f1_all5": ms([s["macro_f1_all5"] for s in seeds]),
        "f1_ratio": ms(
            [s["macro_f1_c125"] / s["macro_f1_prior"] for s in seeds if s["macro_f1_prior"]]
        ),
        "effect_ratio": ms([s["mitigation"].get("effect_ratio", np.nan) for s in seeds]),
        "targeted_drop": ms([s["mitigation"].get("targeted_drop", np.nan) for s in seeds]),
        "control_targeted_drop": ms(
            [s["mitigation"].get("control_targeted_drop", np.nan) for s in seeds]
        ),
        "gates_ok": [s["gates_ok"] for s in seeds],
    }
    sets = [set(s["unlearned_idx"]) for s in seeds]
    jac = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1 :] if a | b]
    out["jaccard_unlearned"] = ms(jac)
    return out


def table(res: dict) -> str:
    s = res["summary"]

    def f(d: dict, p: int = 2) -> str:
        return "n/a" if d["mean"] is None else f"{d['mean']:.{p}f} ± {d['std']:.{p}f}"

    lines = [
        f"Machine: {res['machine']}. Model: tiny Llama (2 layers, hidden {res['args']['hidden']}) pre-trained "
        f"on the synthetic fact world; data: `ilp_diag.synthetic.build_world`; seeds {res['args']['seeds']}.",
        "",
        "| group | unlearned rate | × controls (goal ≥ 3) |",
        "|---|---:|---:|",
    ]
    lines.append(f"| control | {f(s['group_rates']['control'], 3)} | 1 |")
    for g in GROUPS[1:]:
        lines.append(f"| {g} | {f(s['group_rates'][g], 3)} | {f(s['ratio_to_controls'][g], 1)} |")
    lines += [
        "",
        "| metric | value (mean ± std over seeds) |",
        "|---|---|",
        f"| macro-F1 C1/C2/C5 (primary cause) | {f(s['macro_f1_c125'])} |",
        f"| macro-F1 prior baseline | {f(s['macro_f1_prior'])} |",
        f"| F1 ratio (goal ≥ 2) | {f(s['f1_ratio'])} |",
        f"| macro-F1 all five causes | {f(s['macro_f1_all5'])} |",
        f"| C5 mitigation: targeted unlearned drop, resampling | {f(s['targeted_drop'])} |",
        f"| C5 mitigation: targeted drop, random re-weighting (equal compute) | {f(s['control_targeted_drop'])} |",
        f"| mitigation effect ratio (goal ≥ 2) | {f(s['effect_ratio'])} |",
        f"| Jaccard of unlearned sets across seeds | {f(s['jaccard_unlearned'])} |",
        f"| gates (controls ≥ 0.95, F_pre ≥ 0.8) per seed | {s['gates_ok']} |",
        "| C3 flagged unlearned: graded vs pass@n | "
        + f"{np.mean([x['group_rates']['C3'] for x in res['seeds']]):.2f} vs "
        + f"{np.mean([x['c3_unlearned_pass_at_n'] for x in res['seeds']]):.2f} |",
    ]
    conf: dict[str, dict[str, int]] = {}
    for x in res["seeds"]:
        for cause, col in x["confusion"].items():
            for g, v in col.items():
                conf.setdefault(g, {}).setdefault(cause, 0)
                conf[g][cause] += int(v)
    causes = [*PLANTED.values(), "unexplained"]
    lines += [
        "",
        "Confusion (unlearned planted samples, summed over seeds; rows = planted, columns = primary cause):",
        "",
        "| planted | " + " | ".join(causes) + " |",
        "|---|" + "---:|" * len(causes),
    ]
    for g in GROUPS[1:]:
        lines.append(
            f"| {g} | " + " | ".join(str(conf.get(g, {}).get(c, 0)) for c in causes) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    p = bench_parser(__doc__, HERE / "results" / "planted.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--epochs0", type=float, default=150)
    p.add_argument("--epochs1", type=float, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--probe-every", type=int, default=10)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--gamma", type=float, default=2.0)
    p.add_argument("--embedder", default="hash", help="'hash' (no model) or 'minilm'")
    p.add_argument(
        "--dump-signals", action="store_true", help="write each seed's diagnosis table as CSV"
    )
    p.add_argument("--no-mitigate", dest="mitigate", action="store_false")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "ilp-diag-bench"))
    p.add_argument(
        "--table", action="store_true", help="print the README table from --out and exit"
    )
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.out.read_text())))
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    a.embedder = None if a.embedder == "minilm" else a.embedder
    res = {
        "machine": machine_info(threads=1),
        "args": {k: v for k, v in vars(a).items() if k != "out"},
        "seeds": [],
    }
    res["args"]["out"] = str(a.out)
    with torch_threads(1):
        for seed in a.seeds:
            res["seeds"].append(run_seed(seed, a))
            logger.info(
                "seed %d: %s",
                seed,
                json.dumps(
                    {k: v for k, v in res["seeds"][-1].items() if k != "unlearned_idx"}, default=str
                ),
            )
            res["summary"] = summarize(res)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1, default=str))
    print(table(res))


main()
