"""Render the README's results tables from ``bench/results/*.json`` (markdown on stdout).

python bench/readme_tables.py            # paste between the README's results markers
python bench/readme_tables.py --write    # or rewrite them in place
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).parent


def pipeline_table(d: dict) -> str:
    s = d["summary"]
    base = s["always-CoT + vote"]
    lines = [
        f"**Pipeline** (`bench/pipeline.py`; generator `{Path(d['generator']).name}`; "
        f"{d['settings']['test_per_k']} held-out items per k = 1…5, τ = {d['settings']['tau']}, M = N = 5; {d['machine']})",
        "",
        "| method | accuracy | CoT trigger rate | generated tokens | decode steps | CPU s | accuracy k=1 / k=3 / k=5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, r in s.items():
        by_k = r["accuracy_by_k"]
        lines.append(
            f"| {m} | {r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f} | {r['trigger_rate']['mean']:.2f} | "
            f"{r['generated_tokens']['mean']:.0f} (×{r['generated_tokens']['mean'] / base['generated_tokens']['mean']:.2f}) | "
            f"{r['decode_steps']['mean']:.0f} (×{r['decode_steps']['mean'] / base['decode_steps']['mean']:.2f}) | "
            f"{r['cpu_s']['mean']:.1f} (×{r['cpu_s']['mean'] / base['cpu_s']['mean']:.2f}) | "
            f"{by_k['1']:.2f} / {by_k['3']:.2f} / {by_k['5']:.2f} |"
        )
    e = s["E-GRM"]
    lines.append("")
    lines.append(
        "E-GRM's trigger rate by k: "
        + ", ".join(f"k={k}: {v:.2f}" for k, v in e["trigger_rate_by_k"].items())
        + f". Random gate, paired estimate (2,000 random subsets of this run's direct-only / always-CoT + scorer "
        f"answers at E-GRM's trigger rate): accuracy {d['goal']['random_gate_paired_accuracy']:.3f}."
    )
    return "\n".join(lines)


def loss_table(d: dict) -> str:
    s = d["summary"]
    st = d["settings"]
    lines = [
        f"**Hybrid loss** (`bench/loss_study.py`; {st['train_groups']} training / {st['test_groups']} test groups of "
        f"N = {st['N']} synthetic paths, the same MLP and steps for every λ, seeds {st['seeds']}; {d['machine']})",
        "",
        "| λ | best-of-N accuracy | best-of-N expected (mean q) | within-group pairwise accuracy | Brier σ(s) vs q |",
        "|---|---|---|---|---|",
    ]
    for lam, r in s.items():
        lines.append(
            f"| {lam} | {r['best_of_n_acc']['mean']:.4f} ± {r['best_of_n_acc']['std']:.4f} | "
            f"{r['best_of_n_expected']['mean']:.4f} | {r['pairwise_acc']['mean']:.4f} ± {r['pairwise_acc']['std']:.4f} | "
            f"{r['brier']['mean']:.4f} ± {r['brier']['std']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--write", action="store_true", help="rewrite the README between its markers")
    p.add_argument("--pipeline", type=Path, default=HERE / "results" / "pipeline.json")
    args = p.parse_args()
    blocks = {
        "pipeline": pipeline_table(json.loads(args.pipeline.read_text())),
        "loss": loss_table(json.loads((HERE / "results" / "loss_study.json").read_text())),
    }
    if not args.write:
        print("\n\n".join(blocks.values()))
        return
    readme = HERE.parent / "README.md"
    text = readme.read_text()
    for name, block in blocks.items():
        pat = re.compile(rf"(<!-- {name}-table -->\n)(?:.*?\n)?(<!-- /{name}-table -->)", re.S)
        if not pat.search(text):
            raise SystemExit(f"README has no <!-- {name}-table --> markers")
        text = pat.sub(lambda m, b=block: m.group(1) + b + "\n" + m.group(2), text)
    readme.write_text(text)


if __name__ == "__main__":
    main()
