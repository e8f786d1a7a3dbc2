"""``e-grm`` demo: E-GRM (consensus gate τ = 0.8) vs always-CoT + majority vote, same run, **simulated generator**.

The demo must run in seconds on CPU, so the generator is :class:`~egrm_reward.simulate.SimulatedArithBackend`
(no neural network: direct answers get unreliable as mod-10 chains get longer, step-by-step stays accurate).
It shows the gating mechanics and its token saving; the trained tiny-model comparison lives in ``bench/``.
Metric: generated tokens (lower is better); accuracies and the CoT trigger rate are in the details.
Reported as a ``"pipeline check"``, not a claim: nothing here is learned.
"""

from __future__ import annotations

from papercore.demo import DemoResult

N_PER_K = 40


def run_demo() -> DemoResult:
    from egrm_reward.arith import arith_egrm_config, make_split
    from egrm_reward.pipeline import EfficientGRM
    from egrm_reward.simulate import SimulatedArithBackend

    problems = make_split(N_PER_K, seed=123)
    items = [{"prompt": p.prompt} for p in problems]
    backend = SimulatedArithBackend()
    stats = {}
    for name, kw in (("egrm", {}), ("always_cot", {"always_cot": True})):
        grm = EfficientGRM(backend, config=arith_egrm_config(aggregation="vote", **kw))
        res = grm(items)
        stats[name] = {
            "accuracy": sum(r.answer == p.answer for r, p in zip(res, problems, strict=True))
            / len(problems),
            "tokens": sum(r.cost.generated_tokens for r in res),
            "trigger_rate": sum(r.route.value == "long" for r in res) / len(res),
        }
    details = {f"{m}_{k}": round(v, 4) for m, s in stats.items() for k, v in s.items()}
    details["generator"] = (
        "simulated (no neural network); see bench/ for the trained tiny generator"
    )
    return DemoResult(
        method="E-GRM τ=0.8 (simulated generator)",
        baseline="always-CoT + vote N=5",
        metric="generated tokens",
        value=float(stats["egrm"]["tokens"]),
        baseline_value=float(stats["always_cot"]["tokens"]),
        higher_is_better=False,
        details=details,
        # a simulated generator shows the gating mechanics, not a learned judge: no claim
        kind="pipeline check",
    )
