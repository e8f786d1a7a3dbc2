from __future__ import annotations

import json

import pytest

from crps_synth.toy import (
    RuleAnalyst,
    ToyExplorer,
    apply,
    make_problems,
    parse_problem,
    solution_steps,
    trap_indices,
    trap_of,
)


def test_problem_round_trip_and_solution():
    p = parse_problem("start 2, sub 3, 3 times.")
    assert p.values() == [2, 9, 6, 3] and p.answer == "3"
    assert trap_indices(p) == [0]
    assert solution_steps(p, {0}) == ["2-3 check 12-3=9", "9-3=6", "6-3=3", "answer \\boxed{3}"]
    assert (
        apply("mul", 4, 3) == 2 and trap_of("mul", 4, 3) == "tens" and trap_of("add", 1, 2) is None
    )


def test_make_problems_distinct_and_finite_grammar():
    ps = make_problems(50, seed=1, min_ops=2, max_ops=4)
    assert len({p.text for p in ps}) == 50 and all(trap_indices(p) for p in ps)
    with pytest.raises(ValueError, match="distinct toy problems"):
        make_problems(10_000, seed=0, min_ops=2, max_ops=2)
    assert 0 < len(make_problems(10_000, seed=0, min_ops=2, max_ops=2, strict=False)) < 10_000


def test_explorer_greedy_is_right_and_sampling_errs():
    p = make_problems(1, seed=4)[0]
    steps = ToyExplorer().rollout(p.text, [], 0.0)
    assert steps == solution_steps(p)
    answers = {ToyExplorer(trap_error=1.0).rollout(p.text, [], 0.7, seed=s)[-1] for s in range(20)}
    assert len(answers) > 1


def test_rule_analyst_pivot_and_check():
    from crps_synth import ContrastiveAnalyzer, ContrastivePair, PathSynthesizer, Trajectory
    from crps_synth.verify import StringVerifier

    p = parse_problem("start 2, sub 3, 3 times.")
    good = solution_steps(p)
    bad = ["2-3=1", "1-3=8", "8-3=5", "answer \\boxed{5}"]
    t = lambda s, ok: Trajectory(s, ok, float(ok), 2, len(s), 0.5, None)  # noqa: E731
    pair = ContrastivePair(p.text, t(good, True), t(bad, False), "hard", "x", p.answer)
    crit = ContrastiveAnalyzer(RuleAnalyst()).analyze(pair)
    assert crit.divergence_step_index == 0 and crit.failure_mode_to_avoid == "borrow"
    path = PathSynthesizer(RuleAnalyst(), StringVerifier()).synthesize(crit)
    assert path.verified and path.steps[0] == "2-3 check 12-3=9"
    plain = PathSynthesizer(RuleAnalyst(pivot="none"), StringVerifier()).synthesize(crit)
    assert plain.verified and "check" not in " ".join(plain.steps)
    assert json.loads(RuleAnalyst().chat("", ContrastiveAnalyzer(RuleAnalyst()).prompt(pair)))
