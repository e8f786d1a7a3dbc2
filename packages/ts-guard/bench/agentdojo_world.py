"""Shared AgentDojo plumbing for the benches: offline suites (v1.2.2), the important_instructions
injection text, scripted episodes through AgentDojo's own utility/security checkers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from agentdojo.agent_pipeline import AgentPipeline, InitQuery, ToolsExecutionLoop
from agentdojo.attacks.base_attacks import FixedJailbreakAttack
from agentdojo.attacks.important_instructions_attacks import ImportantInstructionsAttack
from agentdojo.functions_runtime import FunctionCall
from agentdojo.task_suite.load_suites import get_suite

from ts_guard import GuardInput, OracleGuard, RuleGuard
from ts_guard.agentdojo_ext import GuardedToolsExecutor, ScriptedAgent

SUITES = ("banking", "slack", "travel", "workspace")
VERSION = "v1.2.2"


@dataclass
class Pair:
    suite: str
    user_task: Any
    injection_task: Any
    injections: dict[str, str]


def _attack(suite) -> FixedJailbreakAttack:
    attack = FixedJailbreakAttack(ImportantInstructionsAttack._JB_STRING, suite, None)  # type: ignore[arg-type]
    attack.user_name, attack.model_name = "Emma Johnson", "AI assistant"
    return attack


def load_pairs(per_suite: int, seed: int = 0, suites=SUITES) -> list[Pair]:
    """Up to ``per_suite`` injectable (user task, injection task) pairs per suite, seeded choice."""
    rng = random.Random(seed)
    out: list[Pair] = []
    for name in suites:
        suite = get_suite(VERSION, name)
        attack = _attack(suite)
        pairs = []
        for ut in suite.user_tasks.values():
            try:
                attack.get_injection_candidates(ut)
            except ValueError:
                continue  # not injectable
            for it in suite.injection_tasks.values():
                pairs.append((ut, it))
        rng.shuffle(pairs)
        for ut, it in pairs[:per_suite]:
            out.append(Pair(name, ut, it, attack.attack(ut, it)))
    return out


def _same(a: FunctionCall, b: FunctionCall) -> bool:
    return a.function == b.function and dict(a.args) == dict(b.args)


def plans(pair: Pair, env) -> tuple[list[FunctionCall], list[FunctionCall]]:
    task_env = pair.user_task.init_environment(env.model_copy(deep=True))
    user_calls = list(pair.user_task.ground_truth(task_env))
    inj_calls = [
        c
        for c in pair.injection_task.ground_truth(task_env)
        if not any(_same(c, u) for u in user_calls)
    ]
    return user_calls, inj_calls


def oracle_truth(inj_calls: list[FunctionCall]):
    def truth(x: GuardInput) -> tuple[bool, bool, float]:
        bad = any(
            c.function == x.candidate.name and _norm(c.args) == _norm(x.candidate.arguments)
            for c in inj_calls
        )
        return False, bad, 1.0 if bad else 0.0

    return truth


def _norm(args) -> str:
    import json

    return json.dumps(dict(args), sort_keys=True, default=str)


def make_guard(kind: str, inj_calls, seed: int, flip_prob: float = 0.1):
    if kind == "oracle":
        return OracleGuard(oracle_truth(inj_calls), flip_prob=flip_prob, seed=seed)
    if kind == "rule":
        return RuleGuard()
    raise ValueError(kind)


def run_episode(
    pair: Pair,
    mode: str,
    guard_kind: str | None,
    seed: int,
    *,
    q_follow=0.6,
    q_recover=0.8,
    attack=True,
) -> dict[str, Any]:
    """One scripted episode; utility and security from AgentDojo's task checkers."""
    suite = get_suite(VERSION, pair.suite)
    env = suite.load_and_inject_default_environment(pair.injections if attack else {})
    user_calls, inj_calls = plans(pair, env)
    ep_seed = random.Random(
        f"{seed}|{pair.suite}|{pair.user_task.ID}|{pair.injection_task.ID}"
    ).randrange(2**31)
    agent = ScriptedAgent(
        user_calls,
        inj_calls,
        pair.user_task.GROUND_TRUTH_OUTPUT,
        q_follow=q_follow,
        q_recover=q_recover,
        seed=ep_seed,
    )
    guard = make_guard(guard_kind, inj_calls, ep_seed) if guard_kind else None
    executor = (
        GuardedToolsExecutor(guard, mode=mode)
        if mode != "none"
        else GuardedToolsExecutor(None, mode="none")
    )
    pipeline = AgentPipeline(
        [InitQuery(), agent, ToolsExecutionLoop([executor, agent], max_iters=20)]
    )
    pipeline.name = "scripted"
    utility, security = suite.run_task_with_pipeline(
        pipeline,
        pair.user_task,
        pair.injection_task if attack else None,
        pair.injections if attack else {},
        environment=env,
    )
    return {
        "utility": bool(utility),
        "asr": bool(security) if attack else False,
        "followed": agent.saw_injection,
    }
