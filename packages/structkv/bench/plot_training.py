"""Plot the training curves of the associative-recall attempts (bench/runs/*/history.json or *.log).

uv run --locked python packages/structkv/bench/plot_training.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
# runs that continue another run: (source run, its last step) -> plotted after it
GROWN = {"recall9": ("recall6", 2000), "recall10": ("recall6", 2000)}


def _history(name: str) -> list[dict]:
    log = HERE / "runs" / f"{name}.log"
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    summary = {}
    for name in ["recall"] + [f"recall{i}" for i in range(2, 11)]:
        if not (HERE / "runs" / f"{name}.log").exists():
            continue
        h = _history(name)
        src, offset = GROWN.get(name, (None, 0))
        label = f"{name} (grown from {src})" if src else name
        steps = [r["step"] + offset for r in h]
        ax_loss.plot(steps, [r["loss"] for r in h], marker=".", label=label)
        ax_acc.plot(steps, [r["acc@256"] for r in h], marker=".", label=label)
        summary[name] = {"last": h[-1], "best_acc@256": max(r["acc@256"] for r in h)}
        print(f"{name}: {len(h)} evals, last {h[-1]}, best acc@256 {summary[name]['best_acc@256']}")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss of the logged batch (nats)")
    ax_loss.set_yscale("symlog", linthresh=0.01)
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("full-cache exact match @256 tokens")
    ax_acc.axhline(0.9, color="k", ls="--", label="gate 0.9")
    ax_acc.legend(fontsize=7)
    fig.tight_layout()
    (HERE / "results").mkdir(exist_ok=True)
    fig.savefig(HERE / "results" / "training_curves.png", dpi=100)
    (HERE / "results" / "training_curves.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
