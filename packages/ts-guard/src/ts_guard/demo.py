"""``ts-guard demo``: TS-Flow in miniature on the synthetic bank world (no model, CPU, < 1 s).

A scripted stochastic agent (follows the injected instruction with q_follow=0.6, recovers after guard
feedback with q_recover=0.8) runs 300 seeded episodes per mode with a noisy-oracle guard (flip 0.1).
The method is TS-Flow with feedback, the baseline is the unguarded agent: metric = attack success rate
(lower is better). Utility under attack (rent paid) is reported beside it, with detect-and-abort.
"""

from __future__ import annotations

import time

from papercore.demo import DemoResult
from ts_guard.flow import TSFlowAgent
from ts_guard.guards import OracleGuard
from ts_guard.synthetic import USER_REQUEST, bank_truth, make_episode

__all__ = ["run_demo", "run_mode", "run_modes"]


def run_mode(
    mode: str, seed: int = 0, episodes: int = 300, flip_prob: float = 0.1
) -> dict[str, float]:
    """ASR and utility under attack of one mode over ``episodes`` seeded episodes (noisy-oracle guard)."""
    attacked = done = 0
    for i in range(episodes):
        env, policy = make_episode(seed * 100_003 + i)
        guard = (
            OracleGuard(bank_truth, flip_prob=flip_prob, seed=seed * 100_003 + i)
            if mode != "none"
            else None
        )
        TSFlowAgent(policy, guard, env, mode=mode).run(USER_REQUEST)  # type: ignore[arg-type]
        attacked += env.attacked
        done += env.user_goal_done
    return {"asr": attacked / episodes, "utility": done / episodes}


def run_modes(
    seed: int = 0, episodes: int = 300, flip_prob: float = 0.1
) -> dict[str, dict[str, float]]:
    """ASR and utility per mode (none / abort / feedback) over ``episodes`` paired seeded episodes."""
    return {
        mode: run_mode(mode, seed, episodes, flip_prob) for mode in ("none", "abort", "feedback")
    }


def run_demo(seed: int = 0) -> DemoResult:
    """TS-Flow (feedback) vs no guard on the synthetic bank world; ASR, lower is better."""
    t0 = time.time()
    res = run_modes(seed)
    return DemoResult(
        method="TS-Flow feedback (noisy oracle guard)",
        baseline="no guard",
        metric="attack success rate (synthetic bank world)",
        value=res["feedback"]["asr"],
        baseline_value=res["none"]["asr"],
        higher_is_better=False,
        details={"modes": res, "episodes": 300, "flip_prob": 0.1},
        package="ts-guard",
        seconds=time.time() - t0,
    )
