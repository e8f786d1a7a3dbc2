"""ATR: the asymmetric transition matrix, its dissipative property, and anti-hacking checks (spec §2.3)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agentic_sql.atr import (
    ATRConfig,
    ATRMode,
    aggregate_trajectory_reward,
    build_transition_matrix,
    check_dissipative,
    score_to_state,
    state_path,
    trajectory_reward,
)


def walk_weight(W: np.ndarray, walk: tuple[int, ...]) -> float:
    return float(sum(W[a, b] for a, b in itertools.pairwise(walk)))


def is_monotone(values: np.ndarray, walk: tuple[int, ...]) -> bool:
    """Energy V = 1 - v never increases along the walk."""
    return all(values[b] >= values[a] for a, b in itertools.pairwise(walk))


def has_cycle(walk: tuple[int, ...]) -> bool:
    return len(set(walk)) < len(walk)


def remove_first_cycle(walk: tuple[int, ...]) -> tuple[int, ...]:
    seen: dict[int, int] = {}
    for i, z in enumerate(walk):
        if z in seen:
            return walk[: seen[z]] + walk[i:]
        seen[z] = i
    return walk


def test_default_matrix_shape_values_and_asymmetry():
    cfg = ATRConfig()
    W, v = build_transition_matrix(cfg)
    assert W.shape == (5, 5) and cfg.n_states == 5
    np.testing.assert_allclose(v, [0.0, 0.17, 0.505, 0.835, 1.0])
    assert W[0, 4] == pytest.approx(1.0)  # alpha * (1 - 0)
    assert W[4, 0] == pytest.approx(-2.0)  # -beta * (1 - 0)
    assert W[2, 2] == pytest.approx(-0.05) and W[4, 4] == 0.0
    # every up-move earns less than the matching down-move costs
    for i, j in itertools.permutations(range(5), 2):
        if v[j] > v[i]:
            assert W[i, j] + W[j, i] < 0


def test_check_dissipative_true_for_defaults_false_for_beta_below_alpha():
    assert check_dissipative(*build_transition_matrix(ATRConfig()))
    bad = ATRConfig(alpha=2.0, beta=1.0, allow_non_dissipative=True)
    assert not check_dissipative(*build_transition_matrix(bad))
    equal = ATRConfig(alpha=1.0, beta=1.0, allow_non_dissipative=True)
    assert not check_dissipative(*build_transition_matrix(equal))  # zero-weight up/down cycles


def test_check_dissipative_on_custom_matrices():
    W, v = build_transition_matrix()
    W2 = W.copy()
    W2[4, 4] = 0.1  # resting at the goal must not earn reward
    assert not check_dissipative(W2, v)
    W3 = W.copy()
    W3[1, 1] = 0.0  # free stagnation outside the goal is a non-negative cycle
    assert not check_dissipative(W3, v)
    with pytest.raises(ValueError, match="square"):
        check_dissipative(W[:4], v)


def test_check_dissipative_agrees_with_brute_force_cycle_enumeration():
    rng = np.random.default_rng(0)
    v = np.array([0.0, 0.3, 0.6, 1.0])
    agree = 0
    for _ in range(200):
        W = rng.normal(scale=0.5, size=(4, 4))
        W[3, 3] = min(W[3, 3], 0.0)
        brute = True
        for length in range(1, 5):  # every simple cycle has <= 4 edges on 4 states
            for walk in itertools.product(range(4), repeat=length):
                cyc = (*walk, walk[0])
                if length == 1 and walk[0] == 3:
                    continue  # resting at the goal
                if walk_weight(W, cyc) >= -1e-9:
                    brute = False
        assert check_dissipative(W, v) == brute
        agree += 1
    assert agree == 200


def _turn(z: int, values: np.ndarray) -> tuple[float, bool]:
    """A (score, error) turn that lands in state ``z``: 0 = error, K = exact, else a bin midpoint."""
    if z == 0:
        return 0.0, True
    return (1.0 if z == len(values) - 1 else float(values[z])), False


@pytest.mark.parametrize("normalize", [False, True])
def test_closed_walk_weight_formula(normalize):
    """Sum of W on a closed walk = (alpha - beta) * U - gamma * (#self loops outside the goal),
    and ATR adds it to s_T with weight lam, divided by T only when normalising."""
    cfg = ATRConfig(normalize_by_turns=normalize)
    W, v = build_transition_matrix(cfg)
    for length in range(1, 6):
        for mid in itertools.product(range(5), repeat=length - 1):
            for start in range(5):
                walk = (start, *mid, start)
                ups = sum(max(0.0, v[b] - v[a]) for a, b in itertools.pairwise(walk))
                loops = sum(1 for a, b in itertools.pairwise(walk) if a == b and a != 4)
                expected = (cfg.alpha - cfg.beta) * ups - cfg.gamma * loops
                assert walk_weight(W, walk) == pytest.approx(expected)
                # the same walk played from z_0 = 0 (a closed walk when it starts at 0)
                if start != 0:
                    continue
                turns = [_turn(z, v) for z in walk[1:]]
                scores, errors = [s for s, _ in turns], [e for _, e in turns]
                assert state_path(scores, errors, cfg) == list(walk)
                T = len(turns)
                s_T = 0.0 if errors[-1] else scores[-1]
                total = expected / T if normalize else expected
                atr = aggregate_trajectory_reward(scores, errors, cfg)
                assert atr == pytest.approx(s_T + cfg.lam * total - cfg.effective_turn_cost * T)


def test_brute_force_all_walks_up_to_length_5_argmax_is_monotone_and_cycle_free():
    """Un-normalised sum with turn cost: over every walk of <= 5 turns from z_0 = 0."""
    cfg = ATRConfig(normalize_by_turns=False)
    W, v = build_transition_matrix(cfg)
    c = cfg.effective_turn_cost
    assert c == pytest.approx(0.02)
    walks = [(0, *rest) for T in range(1, 6) for rest in itertools.product(range(5), repeat=T)]
    scores = {w: walk_weight(W, w) - c * (len(w) - 1) for w in walks}
    best = max(scores.values())
    argmax = [w for w, s in scores.items() if s == pytest.approx(best)]
    assert argmax == [(0, 4)]  # straight to the goal: monotone, cycle-free, shortest
    # (i) removing a cycle always strictly improves the walk
    n_cyclic = 0
    for w, s in scores.items():
        if has_cycle(w):
            n_cyclic += 1
            shorter = remove_first_cycle(w)
            assert walk_weight(W, shorter) - c * (len(shorter) - 1) > s
    assert n_cyclic > 3000
    # (ii) for every end state, the best walk reaching it is monotone and cycle-free
    for end in range(5):
        ending = {w: s for w, s in scores.items() if w[-1] == end}
        top = max(ending.values())
        for w, s in ending.items():
            if s == pytest.approx(top):
                assert is_monotone(v, w) and not has_cycle(w[1:]), (end, w)
    # sum W <= alpha * (v_T - v_0) for every walk
    for w in walks:
        assert walk_weight(W, w) <= cfg.alpha * (v[w[-1]] - v[w[0]]) + 1e-12


def test_brute_force_fixed_length_normalised_argmax_is_monotone():
    """With the /T normalisation the statements hold for a fixed number of turns T."""
    cfg = ATRConfig()
    W, v = build_transition_matrix(cfg)
    for T in range(1, 6):
        walks = [(0, *rest) for rest in itertools.product(range(5), repeat=T)]
        for end in range(5):
            cand = [w for w in walks if w[-1] == end]
            scores = [walk_weight(W, w) / T for w in cand]
            top = max(scores)
            for w, s in zip(cand, scores, strict=False):
                if s == pytest.approx(top):
                    assert is_monotone(v, w), (T, end, w)


def test_sandbagging_never_beats_immediate_success_normalised():
    cfg = ATRConfig(normalize_by_turns=True)  # turn_cost 0
    immediate = aggregate_trajectory_reward([1.0], [False], cfg)
    assert immediate == pytest.approx(1.0 + 0.5 * 1.0)
    error_first = aggregate_trajectory_reward([0.0, 1.0], [True, False], cfg)
    assert error_first == pytest.approx(1.0 + 0.5 * (-0.05 + 1.0) / 2)
    for first in np.linspace(0.0, 0.9, 10):
        for err in (False, True):
            sandbag = aggregate_trajectory_reward([first, 1.0], [err, False], cfg)
            assert sandbag < immediate
            longer = aggregate_trajectory_reward([first, first, 1.0], [err, err, False], cfg)
            assert longer < immediate
    # the full trajectory reward too
    assert trajectory_reward([1.0], final_ex=True, cfg=cfg) > trajectory_reward(
        [0.0, 1.0], [True, False], final_ex=True, cfg=cfg
    )


def test_sandbagging_unnormalised_turn_cost_breaks_the_telescoping_tie():
    cfg = ATRConfig(normalize_by_turns=False)
    immediate = aggregate_trajectory_reward([1.0], cfg=cfg)
    via_mid = aggregate_trajectory_reward([0.5, 1.0], cfg=cfg)
    assert immediate == pytest.approx(1.0 + 0.5 * 1.0 - 0.02)
    assert via_mid == pytest.approx(
        1.0 + 0.5 * 1.0 - 0.04
    )  # telescoping: same W sum, one more turn
    assert immediate > via_mid
    no_cost = ATRConfig(normalize_by_turns=False, turn_cost=0.0)
    assert aggregate_trajectory_reward([1.0], cfg=no_cost) == pytest.approx(
        aggregate_trajectory_reward([0.5, 1.0], cfg=no_cost)
    )


def test_regression_is_punished_more_than_improvement_is_rewarded():
    cfg = ATRConfig()
    up = aggregate_trajectory_reward([0.2, 0.8], cfg=cfg) - 0.8
    down = aggregate_trajectory_reward([0.8, 0.2], cfg=cfg) - 0.2
    assert up > 0 > down
    # ending at the same place, a trajectory that regressed on the way scores lower
    assert aggregate_trajectory_reward([0.5, 0.9, 0.5, 1.0]) < aggregate_trajectory_reward(
        [0.1, 0.5, 0.5, 1.0]
    )


def test_lam_zero_gives_last_score():
    cfg = ATRConfig(lam=0.0, turn_cost=0.0)
    for traj in ([0.3], [0.0, 0.9], [1.0, 0.2, 0.6], [0.5, 1.0, 1.0]):
        assert aggregate_trajectory_reward(traj, cfg=cfg) == pytest.approx(traj[-1])
    assert aggregate_trajectory_reward([0.7, 0.4], [False, True], cfg=cfg) == 0.0


def test_score_to_state_bins():
    cfg = ATRConfig()
    assert score_to_state(0.0, True, cfg) == 0
    assert score_to_state(0.9, True, cfg) == 0
    assert score_to_state(0.0, False, cfg) == 1
    assert score_to_state(0.33, False, cfg) == 1
    assert score_to_state(0.34, False, cfg) == 2
    assert score_to_state(0.9, False, cfg) == 3
    assert score_to_state(1.0, False, cfg) == 4
    assert state_path([0.0, 0.5, 1.0], [True, False, False], cfg) == [0, 0, 2, 4]


def test_continuous_mode():
    cfg = ATRConfig(mode=ATRMode.CONTINUOUS, normalize_by_turns=True)
    # 0 -> 0.4 -> 1.0: improvements only, alpha * 1.0 total
    assert aggregate_trajectory_reward([0.4, 1.0], cfg=cfg) == pytest.approx(1.0 + 0.5 * 1.0 / 2)
    # regression costs beta per unit
    assert aggregate_trajectory_reward([0.8, 0.4], cfg=cfg) == pytest.approx(
        0.4 + 0.5 * (0.8 - 2.0 * 0.4) / 2
    )
    assert ATRConfig(mode="continuous").mode is ATRMode.CONTINUOUS


def test_custom_matrix_is_used():
    W = np.zeros((5, 5))
    W[0, 4] = 3.0
    assert aggregate_trajectory_reward([1.0], W=W) == pytest.approx(1.0 + 0.5 * 3.0 - 0.02)
    with pytest.raises(ValueError, match="5x5"):
        aggregate_trajectory_reward([1.0], W=np.zeros((3, 3)))


def test_trajectory_reward_weights_and_format_penalty():
    cfg = ATRConfig(w_ex=2.0, w_atr=0.5, fmt_penalty=3.0)
    atr = aggregate_trajectory_reward([0.5], cfg=cfg)
    # a format failure ends in the error state: turns, then a transition to state 0
    atr_err = aggregate_trajectory_reward([0.5, 0.0], [False, True], cfg=cfg)
    assert atr_err < 0 < atr
    assert trajectory_reward([0.5], final_ex=False, format_ok=False, cfg=cfg) == pytest.approx(
        0.5 * (cfg.atr_floor + atr_err) - 3.0
    )
    assert trajectory_reward([1.0], final_ex=True, cfg=cfg) == pytest.approx(
        2.0 + 0.5 * aggregate_trajectory_reward([1.0], cfg=cfg)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 0.5}, "beta must be > alpha"),
        ({"beta": 1.0}, "beta must be > alpha"),
        ({"gamma": -0.1}, "gamma"),
        ({"bins": (0.0, 0.5, 0.4, 1.0)}, "bins"),
        ({"bins": (0.1, 1.0)}, "bins"),
        ({"turn_cost": -1.0}, "turn_cost"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ATRConfig(**kwargs)


def test_bad_trajectories_raise():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aggregate_trajectory_reward([0.5, 1.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aggregate_trajectory_reward([-0.1])
    with pytest.raises(ValueError, match="turn_errors has 1"):
        aggregate_trajectory_reward([0.5, 0.5], [False])
    assert aggregate_trajectory_reward([]) == 0.0
