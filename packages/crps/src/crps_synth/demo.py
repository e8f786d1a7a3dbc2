"""``crps-synth demo`` / ``papercore demo``: the toy miniature with one seed and small settings.

N CRPS examples (pipeline with the rule analyst) against 10·N rejection-sampling examples, tiny Llama
students trained with TRL SFTTrainer for the same number of steps, exact match of the boxed answer on
held-out problems. Chance (0.1) is the floor: the result is a ``"claim"`` only when the RS student
beats chance by ``MIN_GAIN``, else a ``"pipeline check"``. The bench (``bench/bench_toy.py``) runs the
full comparison with three seeds.
"""

from __future__ import annotations

from crps_synth.experiment import CHANCE, ToyExperimentConfig, run_seed
from papercore.demo import DemoResult, demo_kind

MIN_GAIN = 0.05

DEMO_CONFIG = ToyExperimentConfig(
    n_problems=60,
    n_eval=100,
    min_ops=2,
    max_ops=4,
    ood_min_ops=5,
    ood_max_ops=6,
    steps=150,
    batch_size=16,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
)


def run_demo(seed: int = 0, config: ToyExperimentConfig | None = None) -> DemoResult:
    """Train a CRPS student and an RS student on the toy domain; compare in-domain accuracy."""
    cfg = config or DEMO_CONFIG
    res = run_seed(cfg, seed, methods=("crps", "rs"))
    m = res["methods"]
    return DemoResult(
        method=f"CRPS (N={m['crps']['n_train']})",
        baseline=f"rejection sampling (10N={m['rs']['n_train']})",
        metric="exact match (in-domain)",
        value=m["crps"]["acc_in"],
        baseline_value=m["rs"]["acc_in"],
        details={"ood": {k: v["acc_ood"] for k, v in m.items()}, "data": res["data"]["rows"]},
        floor=CHANCE,
        floor_name="chance",
        kind=demo_kind(m["rs"]["acc_in"], CHANCE, min_gain=MIN_GAIN),
    )
