"""Issue 21 §1: rewards that cannot be gamed (format failure floor, length consistency, row-aware CSMR)."""

from __future__ import annotations

import itertools
import random

import pytest

from agentic_sql.atr import ATRConfig, aggregate_trajectory_reward, trajectory_reward
from agentic_sql.compare import column_set_score
from agentic_sql.executor import ExecResult
from agentic_sql.rewards import Episode, episode_reward

# representative per-turn outcomes: (score, is_error)
TURNS = [
    (0.0, True),
    (0.0, False),
    (0.2, False),
    (0.5, False),
    (0.8, False),
    (0.9, False),
    (1.0, False),
]


def _random_episode(rng: random.Random) -> Episode:
    T = rng.randint(0, 5)
    turns = [rng.choice(TURNS) for _ in range(T)]
    ep = Episode(
        turn_scores=[s for s, _ in turns],
        turn_errors=[e for _, e in turns],
        gold_valid=True,
    )
    if turns and rng.random() < 0.5:  # well-formed: the last turn is the submitted answer
        s, e = turns[-1]
        ep.final_sql, ep.final_ok, ep.final_score = "SELECT 1", not e, s
        ep.final_ex, ep.format_ok = (not e) and s >= 1.0, True
    else:  # explored (maybe even found the gold result) but never submitted, or malformed
        ep.format_ok = False
    return ep


@pytest.mark.parametrize(
    "cfg",
    [ATRConfig(), ATRConfig(normalize_by_turns=True), ATRConfig(lam=1.0, w_ex=0.0)],
    ids=["default", "normalized", "lam1-no-ex"],
)
def test_every_format_failure_scores_below_every_well_formed_episode(cfg):
    rng = random.Random(21)
    episodes = [_random_episode(rng) for _ in range(3000)]
    ok = [episode_reward("atr", ep, cfg) for ep in episodes if ep.format_ok]
    bad = [episode_reward("atr", ep, cfg) for ep in episodes if not ep.format_ok]
    assert len(ok) > 500 and len(bad) > 500
    assert max(bad) < min(ok), (max(bad), min(ok))


def test_not_submitting_the_gold_never_beats_a_wrong_submission():
    # the reported case: explore the gold query, never submit, vs submit a wrong but valid answer
    cfg = ATRConfig()
    explored_gold = trajectory_reward([1.0], final_ex=False, format_ok=False, cfg=cfg)
    wrong_answer = trajectory_reward([0.0], final_ex=False, format_ok=True, cfg=cfg)
    assert explored_gold < wrong_answer
    # more wasted turns without an answer are worse still
    assert trajectory_reward(
        [1.0, 0.2, 0.2], final_ex=False, format_ok=False, cfg=cfg
    ) < trajectory_reward([1.0], final_ex=False, format_ok=False, cfg=cfg)


def test_config_rejects_a_penalty_that_cannot_separate_format_failures():
    with pytest.raises(ValueError, match="fmt_penalty"):
        ATRConfig(fmt_penalty=0.0)
    with pytest.raises(ValueError, match="w_atr"):
        ATRConfig(w_atr=-1.0)


def test_default_is_length_consistent_on_the_reported_walks():
    cfg = ATRConfig()
    assert not cfg.normalize_by_turns
    a = aggregate_trajectory_reward([1, 0.2], cfg=cfg)
    b = aggregate_trajectory_reward([1, 0.2, 0.2], cfg=cfg)
    c = aggregate_trajectory_reward([1, 0.2, 0.2, 0.2], cfg=cfg)
    assert a > b > c


def _walks(max_len: int):
    for T in range(1, max_len + 1):
        yield from itertools.product(TURNS, repeat=T)


def test_brute_force_repeating_or_looping_never_pays_under_the_default_config():
    cfg = ATRConfig()

    def R(walk):
        return trajectory_reward(
            [s for s, _ in walk],
            [e for _, e in walk],
            final_ex=(not walk[-1][1]) and walk[-1][0] >= 1.0,
            cfg=cfg,
        )

    n = 0
    for walk in _walks(4):
        base = R(walk)
        # repeating any turn right after it (a wrong query after a regression included) never pays
        for k in range(len(walk)):
            repeated = (*walk[: k + 1], walk[k], *walk[k + 1 :])
            assert R(repeated) < base, (walk, repeated)
            n += 1
        # inserting a detour that returns to the same turn (a cycle) never pays
        for k in range(len(walk)):
            for detour in TURNS:
                looped = (*walk[: k + 1], detour, walk[k], *walk[k + 1 :])
                assert R(looped) < base, (walk, looped)
    assert n > 10_000
    # and the argmax over all walks up to 5 turns is the immediate exact answer
    best = max(_walks(5), key=R)
    assert best == ((1.0, False),)


def _res(rows, ncols=None):
    ncols = ncols or (len(rows[0]) if rows else 1)
    return ExecResult(ok=True, columns=[f"c{i}" for i in range(ncols)], rows=list(rows))


def test_row_aware_csmr_separates_a_cross_join_from_swapped_columns():
    gold = _res([(i, f"n{i}") for i in range(5)])
    swapped = _res([(f"n{i}", i) for i in range(5)])
    cross = _res([(i, f"n{j}") for i in range(5) for j in range(5)])
    # column-set matching cannot tell them apart (the documented hacking surface)
    assert column_set_score(cross, gold) == column_set_score(swapped, gold) == 0.9
    assert column_set_score(swapped, gold, mode="rows") == pytest.approx(0.9)
    cross_rows = column_set_score(cross, gold, mode="rows")
    assert cross_rows == pytest.approx(2 * 0.2 * 1.0 / 1.2)  # 5 of 25 rows right, all 5 found
    # rows compared as multisets: duplicating every row is no longer free
    doubled = _res([(f"n{i}", i) for i in range(5)] * 2)
    assert column_set_score(doubled, gold, mode="rows") < 0.9


def test_single_column_answers_are_binary_in_exact_mode_partial_in_rows_mode():
    gold = _res([(1,), (2,), (3,), (4,)])
    near = _res([(1,), (2,), (3,)])
    assert column_set_score(near, gold, mode="exact") == 0.0
    assert 0.0 < column_set_score(near, gold, mode="rows") < 0.9
    with pytest.raises(ValueError, match="rows"):
        column_set_score(near, gold, mode="nope")
