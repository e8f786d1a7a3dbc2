from __future__ import annotations

import itertools
import math

import pytest

from crps_synth import MCTS, ConfigError, MCTSConfig, Node, ProtocolError, uct_score
from crps_synth.toy import ToyExplorer, make_problems
from crps_synth.verify import StringVerifier

PROBLEM = make_problems(1, seed=0)[0]


def test_uct_matches_hand_computed_values():
    # Q + c * sqrt(ln N_parent / N_child)
    assert uct_score(0.5, 2, 10, 1.4) == pytest.approx(0.5 + 1.4 * math.sqrt(math.log(10) / 2))
    assert uct_score(1.0, 5, 10, 1.4) == pytest.approx(1.0 + 1.4 * math.sqrt(math.log(10) / 5))
    assert uct_score(0.3, 0, 10, 1.4) == math.inf
    root = Node(state=[], visit_count=10)
    a = Node(["a"], root, visit_count=2, total_value=1.0)  # 0.5 + 1.4*sqrt(ln10/2) = 2.0023
    b = Node(["b"], root, visit_count=5, total_value=5.0)  # 1.0 + 1.4*sqrt(ln10/5) = 1.9501
    c = Node(["c"], root, visit_count=3, total_value=0.0)  # 0.0 + 1.4*sqrt(ln10/3) = 1.2265
    root.children = [a, b, c]
    assert root.best_child(1.4) is a
    assert root.best_child(0.5) is b  # less exploration: 0.5+0.5*1.073=1.036 < 1.0+0.5*0.679=1.339
    root.children.append(Node(["d"], root))  # unvisited → +inf
    assert root.best_child(1.4).state == ["d"]


def _search(n, **kw):
    cfg = MCTSConfig(num_rollouts=n, **kw)
    return MCTS(ToyExplorer(), StringVerifier(), cfg).search(PROBLEM.text, PROBLEM.answer, seed=5)


def test_each_rollout_adds_at_most_one_terminal_and_backprop_counts():
    counts = [len(_search(n).trajectories()) for n in range(1, 11)]
    assert counts[0] == 1
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(counts))
    tree = _search(10)
    assert tree.root.visit_count == 10
    for node in tree.nodes():  # N(parent) = Σ N(children) + rollouts that ended at the parent
        assert node.visit_count >= sum(ch.visit_count for ch in node.children)
        assert 0.0 <= node.q_value <= 1.0


def test_depth_and_width_limits_hold():
    tree = _search(10, max_depth=3, max_actions_per_node=2)
    assert all(len(n.children) <= 2 for n in tree.nodes())
    assert all(n.depth <= 3 for n in tree.nodes())
    trajs = tree.trajectories()
    assert trajs and all(t.length <= 3 for t in trajs)
    # 3 steps cannot reach the answer of a ≥3-operation problem plus its answer line
    assert not any(t.is_correct for t in trajs)


def test_trajectories_hold_full_rollouts_and_path_max_q():
    tree = _search(10)
    trajs = tree.trajectories()
    assert any(t.is_correct for t in trajs)
    for t in trajs:
        assert t.steps[-1].startswith("answer")  # full rollout, not the tree prefix
        assert t.final_answer is not None
        assert t.is_correct == (t.final_answer == PROBLEM.answer)
        assert t.length == len(t.steps)
    for node in tree.nodes():
        if node.evaluated:
            assert max(n.q_value for n in node.path() if n.visit_count) >= node.q_value


def test_official_compat_keeps_prefix_only():
    trajs = _search(10, official_compat=True).trajectories()
    assert trajs
    assert all(not t.steps[-1].startswith("answer") for t in trajs if len(t.steps) < 3)
    assert all(
        t.is_correct == (t.final_answer is not None and t.final_answer == PROBLEM.answer)
        for t in trajs
    )


def test_search_is_deterministic_under_seed():
    a = [t.to_dict() for t in _search(10).trajectories()]
    b = [t.to_dict() for t in _search(10).trajectories()]
    assert a == b


class _Dup:
    def __init__(self, props):
        self.props = props

    def propose(self, problem, prefix, n, temperature, *, seed=None):
        return self.props

    def rollout(self, problem, prefix, temperature, *, seed=None):
        return ["answer \\boxed{1}"]


def test_duplicate_and_empty_proposals():
    tree = MCTS(
        _Dup(["x = 1", " x  =  1 ", "", "y"]), StringVerifier(), MCTSConfig(num_rollouts=2)
    ).search("p", "1")
    assert [c.state[-1] for c in tree.root.children] == ["x = 1"]  # width cut at 3, then deduped
    dead = MCTS(_Dup(["", "  "]), StringVerifier(), MCTSConfig(num_rollouts=3)).search("p", "1")
    assert dead.root.is_terminal and dead.root.reward == 0.0 and dead.trajectories() == []


@pytest.mark.parametrize(
    "kw",
    [
        {"c_puct": 0},
        {"c_puct": -1.0},
        {"max_depth": 0},
        {"num_rollouts": 0},
        {"max_actions_per_node": 0},
    ],
)
def test_bad_config_raises(kw):
    with pytest.raises(ConfigError, match="must be"):
        MCTSConfig(**kw)
    assert issubclass(ConfigError, ValueError)


def test_bad_inputs():
    with pytest.raises(ProtocolError, match="lacks"):
        MCTS(object(), StringVerifier())
    m = MCTS(ToyExplorer(), StringVerifier())
    with pytest.raises(ValueError, match="gold"):
        m.search(PROBLEM.text, "")
