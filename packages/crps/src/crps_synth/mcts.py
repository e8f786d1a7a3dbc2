"""Phase 1: step-level MCTS over reasoning steps (spec 2.1, released ``crps/mcts``).

One rollout = selection → expansion → simulation → backpropagation:

* **selection** descends while a node is expanded and not terminal, by
  ``UCT(child) = Q(child) + c · sqrt(ln N(parent) / N(child))`` with ``c = c_puct`` (1.4); an
  unvisited child scores +inf (ties: the first child). This is the released code's formula; the
  spec's ``1 + N(s, a)`` denominator is not what it runs (issue 18).
* **expansion** asks the explorer for ``max_actions_per_node`` (3) candidate next steps at
  ``temperature`` (0.7), keeps the first segment of each, drops empty ones and duplicates (normalized),
  adds them as children and continues from the first one. No candidate → the node becomes a dead end
  (terminal, reward 0). A child at ``max_depth`` (16) or whose step holds ``\\boxed{}`` is terminal.
* **simulation** completes the solution from the new child (the explorer's rollout), cut at
  ``max_depth`` steps in total; the reward is 1.0 when the ``\\boxed{}`` answer of the full rollout
  verifies against the gold answer, else 0.0. The rollout is kept on the node as one trajectory, so
  **each rollout adds at most one terminal trajectory**; the node stays expandable unless it is
  terminal itself (final answer, depth limit, dead end), whose reward is cached: a rollout that
  selects a terminal node re-uses it and adds no trajectory.
* **backpropagation** adds 1 to N and the reward to W on the path to the root (Q = W / N).

Trajectories (:meth:`MCTSTree.trajectories`) hold the **full rollout** (tree prefix + simulated steps),
``is_correct`` from its verified final answer, ``visit_count`` = N of the node the rollout started
from. The released code instead marks the simulated node terminal (the tree never grows below it),
keeps only the tree prefix as the trajectory and verifies that prefix (which rarely holds the
answer) while the reward came from the discarded rollout; ``MCTSConfig(official_compat=True)``
reproduces that behaviour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from crps_synth.errors import ConfigError, ProtocolError
from crps_synth.steps import normalize_step, segment_steps
from crps_synth.trajectory import Trajectory
from crps_synth.verify import Verifier

logger = logging.getLogger(__name__)


@runtime_checkable
class StepGenerator(Protocol):
    """The explorer: proposes next steps and completes solutions (steps without "Step N:" markers)."""

    def propose(
        self,
        problem: str,
        prefix: list[str],
        n: int,
        temperature: float,
        *,
        seed: int | None = None,
    ) -> list[str]:
        """Up to ``n`` candidate next steps after ``prefix``."""
        ...

    def rollout(
        self, problem: str, prefix: list[str], temperature: float, *, seed: int | None = None
    ) -> list[str]:
        """The remaining steps from ``prefix`` to a final answer (the last one holds ``\\boxed{}``)."""
        ...


@dataclass
class MCTSConfig:
    """MCTS settings (released ``configs/default.yaml``).

    Attributes:
        c_puct: exploration constant c of UCT (> 0).
        max_depth: maximum number of steps of a path (tree depth and rollout length).
        max_actions_per_node: children proposed per expansion (the width limit).
        num_rollouts: MCTS iterations per problem.
        temperature: explorer sampling temperature.
        official_compat: trajectories = tree prefix only, as the released code (see the module doc).
    """

    c_puct: float = 1.4
    max_depth: int = 16
    max_actions_per_node: int = 3
    num_rollouts: int = 10
    temperature: float = 0.7
    official_compat: bool = False

    def __post_init__(self) -> None:
        if not self.c_puct > 0:
            raise ConfigError(f"c_puct must be > 0, got {self.c_puct}")
        for name in ("max_depth", "max_actions_per_node", "num_rollouts"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")


def uct_score(q: float, n_child: int, n_parent: int, c: float) -> float:
    """``Q + c · sqrt(ln N_parent / N_child)``; +inf for an unvisited child (``N_child = 0``)."""
    if n_child == 0:
        return math.inf
    log_parent = math.log(n_parent) if n_parent > 0 else 0.0
    return q + c * math.sqrt(log_parent / n_child)


@dataclass(eq=False)
class Node:
    """A tree node: the steps from the root (``state``), visit count N and total value W."""

    state: list[str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visit_count: int = 0
    total_value: float = 0.0
    reward: float | None = None
    is_terminal: bool = False
    evaluated: bool = False  # a rollout was simulated from here (the node holds a trajectory)
    rollout_steps: list[str] = field(default_factory=list)
    final_answer: str | None = None
    is_correct: bool = False
    rollout_reward: float | None = None

    @property
    def depth(self) -> int:
        return len(self.state)

    @property
    def q_value(self) -> float:
        """W / N (0 when unvisited)."""
        return self.total_value / self.visit_count if self.visit_count else 0.0

    @property
    def is_fully_expanded(self) -> bool:
        return self.is_terminal or bool(self.children)

    def best_child(self, c_puct: float) -> Node:
        """The child with the highest UCT score (first one on ties)."""
        if not self.children:
            raise ValueError("best_child on a node without children")
        scores = [
            uct_score(ch.q_value, ch.visit_count, self.visit_count, c_puct) for ch in self.children
        ]
        return self.children[max(range(len(scores)), key=scores.__getitem__)]

    def path(self) -> list[Node]:
        """Nodes from the root to this node (inclusive)."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def iter_nodes(self) -> Iterator[Node]:
        yield self
        for ch in self.children:
            yield from ch.iter_nodes()


@dataclass
class MCTSTree:
    """The search tree of one problem."""

    problem: str
    gold: str
    root: Node
    config: MCTSConfig
    verifier: Any = None

    def nodes(self) -> list[Node]:
        return list(self.root.iter_nodes())

    def terminal_nodes(self) -> list[Node]:
        """Nodes marked terminal (final answer, depth limit, dead end; every simulated node in
        ``official_compat``)."""
        return [n for n in self.root.iter_nodes() if n.is_terminal and n is not self.root]

    def trajectories(self) -> list[Trajectory]:
        """One :class:`Trajectory` per rollout (DFS order of the nodes they started from).

        Default: the full rollouts. With ``official_compat``: every terminal node (also dead ends and
        unsimulated depth-limit children), steps = tree prefix, ``final_answer`` / ``is_correct`` from
        the prefix text, as the released collector does.
        """
        out = []
        compat = self.config.official_compat
        nodes = (
            self.terminal_nodes() if compat else [n for n in self.root.iter_nodes() if n.evaluated]
        )
        for node in nodes:
            max_q = max((n.q_value for n in node.path() if n.visit_count > 0), default=0.0)
            if compat:
                steps = list(node.state)
                answer = self.verifier.extract("\n".join(steps)) if self.verifier else None
                ok = bool(answer is not None and self.verifier.equivalent(answer, self.gold))
                reward = float(node.reward or 0.0)
            else:
                steps = list(node.state) + list(node.rollout_steps)
                answer, ok, reward = (
                    node.final_answer,
                    node.is_correct,
                    float(node.rollout_reward or 0.0),
                )
            out.append(
                Trajectory(
                    steps=steps,
                    is_correct=ok,
                    reward=reward,
                    visit_count=node.visit_count,
                    length=len(steps),
                    max_q_value=float(max_q),
                    final_answer=answer,
                )
            )
        return out


class MCTS:
    """Step-level MCTS with an explorer (:class:`StepGenerator`) and a verifier (see the module doc)."""

    def __init__(
        self, generator: StepGenerator, verifier: Verifier, config: MCTSConfig | None = None
    ):
        for name, obj, methods in (
            ("generator", generator, ("propose", "rollout")),
            ("verifier", verifier, ("extract", "equivalent")),
        ):
            missing = [m for m in methods if not callable(getattr(obj, m, None))]
            if missing:
                raise ProtocolError(
                    f"{name} must have methods {list(methods)}; {type(obj).__name__} lacks {missing}"
                )
        self.generator = generator
        self.verifier = verifier
        self.config = config or MCTSConfig()

    def search(self, problem: str, gold: str, *, seed: int = 0) -> MCTSTree:
        """Run ``num_rollouts`` rollouts on ``problem``; ``gold`` is the reference answer.

        ``seed`` makes the explorer's calls reproducible (call ``i`` gets seed ``seed * 100003 + i``).
        """
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"problem must be a non-empty string, got {problem!r}")
        if not isinstance(gold, str) or not gold.strip():
            raise ValueError(
                f"gold answer must be a non-empty string (verification needs it), got {gold!r}"
            )
        cfg = self.config
        tree = MCTSTree(problem, gold, Node(state=[]), cfg, self.verifier)
        calls = iter(range(10**9))
        for _ in range(cfg.num_rollouts):
            leaf = self._select(tree.root)
            if not leaf.is_terminal and leaf.depth < cfg.max_depth:
                leaf = self._expand(leaf, problem, seed * 100003 + next(calls))
            reward = self._simulate(leaf, problem, gold, seed * 100003 + next(calls))
            for node in leaf.path():  # backpropagation
                node.visit_count += 1
                node.total_value += reward
        return tree

    def _select(self, node: Node) -> Node:
        while node.is_fully_expanded and not node.is_terminal:
            node = node.best_child(self.config.c_puct)
        return node

    def _expand(self, node: Node, problem: str, seed: int) -> Node:
        cfg = self.config
        cands = self.generator.propose(
            problem, list(node.state), cfg.max_actions_per_node, cfg.temperature, seed=seed
        )
        seen: set[str] = set()
        actions: list[str] = []
        for cand in list(cands)[: cfg.max_actions_per_node]:
            parts = segment_steps(cand) if isinstance(cand, str) else []
            step = parts[0] if parts else ""
            key = normalize_step(step)
            if step and key not in seen:
                seen.add(key)
                actions.append(step)
        if not actions:
            node.is_terminal = True
            node.reward = 0.0
            return node
        for step in actions:
            state = [*node.state, step]
            terminal = len(state) >= cfg.max_depth or "\\boxed{" in step
            node.children.append(Node(state=state, parent=node, is_terminal=terminal))
        return node.children[0]

    def _simulate(self, node: Node, problem: str, gold: str, seed: int) -> float:
        if node.is_terminal and node.reward is not None:
            return float(node.reward)  # cached: no new trajectory
        cfg = self.config
        final = node.depth >= cfg.max_depth or bool(node.state and "\\boxed{" in node.state[-1])
        rollout: list[str] = []
        if not final:
            raw = self.generator.rollout(problem, list(node.state), cfg.temperature, seed=seed)
            rollout = [part for r in raw if isinstance(r, str) for part in segment_steps(r)]
            room = cfg.max_depth - node.depth
            if len(rollout) > room:
                logger.debug("rollout cut at max_depth=%d", cfg.max_depth)
                rollout = rollout[:room]
        text = "\n".join([*node.state, *rollout])
        answer = self.verifier.extract(text)
        ok = bool(answer is not None and self.verifier.equivalent(answer, gold))
        reward = 1.0 if ok else 0.0
        node.rollout_steps, node.final_answer, node.is_correct = rollout, answer, ok
        node.rollout_reward = reward
        node.evaluated = True
        if final or cfg.official_compat:
            node.is_terminal = True
            node.reward = reward
        return reward
