"""Print the README's result tables (markdown) from the JSON files the bench scripts wrote.

uv run --all-packages --all-extras python packages/epi/bench/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
NAMES = {
    "plain": "plain FT",
    "random": "random mask",
    "static": "static (CPI-FT-style)",
    "epi": "**EPI**",
    "replay": "tiny replay (4 stored A examples)",
    "replay_prompts": "replay of all A prompts (pseudo-labels)",
}


def sequential() -> None:
    d = json.loads((RESULTS / "sequential.json").read_text())
    print(f"Machine: {d['machine']}; whole grid {d['seconds']:.0f} s.\n")
    for s in d["summary"]:
        print(f"**conflict {s['conflict']}, p = {s['isolation_ratio']}** (3 seeds)\n")
        print(
            "| method | old-task acc during B (mean ± sd) | new-task acc | EPI / method per seed |"
        )
        print("|---|---|---|---|")
        for m, label in NAMES.items():
            if m not in s["old_acc_mean"]:
                continue
            per = s["epi_ratio_per_seed"].get(m)
            ratio = " / ".join(f"{x:.2f}" for x in per) if per else "—"
            print(
                f"| {label} | {s['old_acc_mean'][m]:.3f} ± {s['old_acc_sd'][m]:.3f} | "
                f"{s['new_acc_mean'][m]:.3f} | {ratio} |"
            )
        verdict = "held" if s["goal_held"] else "not held"
        print(
            f"\nGoal (EPI/static > 1 on ≥ 2/3 seeds: {s['wins_vs_static']}/3; EPI/random > 1: "
            f"{s['wins_vs_random']}/3; EPI new-task acc ≥ 0.95 × plain: {s['new_acc_ok']}): **{verdict}**; "
            f"EPI − plain = {s['epi_minus_plain']:+.3f}"
            + (
                " — formally, but within seed noise (sd of plain "
                f"{s['old_acc_sd']['plain']:.3f}): no practical difference.\n"
                if abs(s["epi_minus_plain"]) < s["old_acc_sd"]["plain"]
                else ".\n"
            )
        )


def llama() -> None:
    files = sorted(RESULTS.glob("llama_trainer_p*.json"))
    if not files:
        return
    d0 = json.loads(files[0].read_text())
    print(f"Machine: {d0['machine']}.\n")
    print("| p | lr (B) | method | old-task acc during B | × plain | new-task acc |")
    print("|---|---|---|---|---|---|")
    for f in files:
        d = json.loads(f.read_text())
        st, res = d["settings"], d["results"]
        base = res["plain"]["mean_old_acc_during_b"]
        for m, r in res.items():
            v = r["mean_old_acc_during_b"]
            print(
                f"| {st['ratio']} | {st['lr_b']} | {NAMES[m]} | {v:.3f} | {v / base:.2f} | {r['final_new_acc']:.3f} |"
            )


def speed() -> None:
    f = RESULTS / "speed.json"
    if not f.exists():
        return
    d = json.loads(f.read_text())
    print(f"Machine: {d['machine']}; {d['model']}; {d['rounds']} interleaved rounds.\n")
    print("| | plain | EPI (p = 0.01, rebuild every 10 steps) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| median step | {d['median_s']['plain'] * 1e3:.1f} ms | {d['median_s']['epi'] * 1e3:.1f} ms | "
        f"{d['median_ratio']:.2f} |"
    )
    print(
        f"| mean step (incl. {d['mask_updates']} rebuilds) | {d['mean_s']['plain'] * 1e3:.1f} ms | "
        f"{d['mean_s']['epi'] * 1e3:.1f} ms | {d['mean_ratio']:.2f} |"
    )


if __name__ == "__main__":
    print("### Sequential A → B, tiny MLP\n")
    sequential()
    print("### Same protocol, tiny Llama in transformers.Trainer\n")
    llama()
    print("\n### Step time\n")
    speed()
