"""ATR — Aggregated Trajectory Reward (spec §2.3).

Per-turn process scores ``s_1..s_T`` (the CSMR of each executed turn, exploratory and final) are
mapped to discrete process states ``z_t`` and aggregated through an *asymmetric* transition matrix
``W`` that rewards improvement more weakly than it punishes regression::

    W[i, j] =  alpha * (v_j - v_i)   if v_j > v_i      (improvement)
    W[i, j] = -beta  * (v_i - v_j)   if v_j < v_i      (regression, beta > alpha)
    W[i, i] = -gamma                 if i is not the goal state   (stagnation)
    W[K, K] =  0

    ATR(s_1..s_T) = s_T + lam * sum_t W[z_{t-1}, z_t] - turn_cost * T      (z_0 = 0; default)
    R(tau)        = w_ex * EX_final + w_atr * max(ATR, atr_floor)          (well-formed episode)
    R(tau)        = w_atr * (atr_floor + min(0, ATR_err)) - fmt_penalty    (format failure)

The default is the *un-normalised* sum with a per-turn cost (``normalize_by_turns=False``,
``turn_cost=0.02``): dividing by the episode's own ``T`` makes the score depend on the length, so
across lengths a repeated wrong turn can raise it (``1, 0.2`` -> 0.035 but ``1, 0.2, 0.2`` ->
0.082 with ``/T``). With the plain sum, every extra turn adds ``W[z, z'] - turn_cost`` and every
cycle has negative weight, so repeating or looping never pays at any length. (Dividing by the
constant ``max_turns`` would do as well, but the reward functions do not know the turn budget.)
The ``/T`` form of the spec stays available as ``normalize_by_turns=True`` (valid only for a fixed
number of turns).

A missing final answer (or any other format failure) is the *error state*: the episode is scored as
if it ended in state 0 (``ATR_err``: the turns, then a transition to the error state, ``s_T = 0``),
and the result is placed strictly below the floor of every well-formed episode, so that not
submitting can never beat submitting (even a wrong answer).

Lyapunov view: with energy ``V(z) = 1 - v(z)`` every closed walk has weight
``(alpha - beta) * U - gamma * (#self loops) < 0`` (``U`` = total upward movement), so a
reward-maximising trajectory contains no cycle and climbs monotonically. :func:`check_dissipative`
verifies this numerically for any matrix (a custom ``W`` included).

The concrete constants are [INFERRED] (the paper's formulas were not available) and all live in
:class:`ATRConfig`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

__all__ = [
    "ATRConfig",
    "ATRMode",
    "aggregate_trajectory_reward",
    "build_transition_matrix",
    "check_dissipative",
    "score_to_state",
    "state_path",
    "trajectory_reward",
    "transition_sum",
]


class ATRMode(StrEnum):
    """How turn-to-turn transitions are weighted."""

    MATRIX = "matrix"  # discrete states through the (K+1)x(K+1) matrix W
    CONTINUOUS = "continuous"  # W(delta) on raw score differences, no bins


@dataclass
class ATRConfig:
    """Every ATR constant (all [INFERRED] defaults, spec §2.3).

    Args:
        alpha: weight of an improvement (per unit of value gained).
        beta: weight of a regression (per unit of value lost); must exceed ``alpha``.
        gamma: cost of a stagnating turn (self loop outside the goal state); ``>= 0``.
        lam: weight of the transition sum inside ATR; ``lam=0`` gives ``ATR = s_T``.
        bins: CSMR bin edges for the intermediate states ``1..K-1`` (value = bin midpoint).
        mode: :class:`ATRMode` (``"matrix"`` or ``"continuous"``).
        normalize_by_turns: divide the transition sum by ``T``. Off by default: the ``/T`` form is
            only length-consistent for a fixed ``T`` (see the module docstring).
        turn_cost: per-turn cost; ``None`` = 0.0 when normalised, 0.02 when not (spec §2.3).
        w_ex, w_atr, fmt_penalty: weights of the final-answer EX term, of ATR, and of a format failure
            in :func:`trajectory_reward` (``w_ex, w_atr >= 0``; ``fmt_penalty > 0`` so that a format
            failure scores strictly below every well-formed episode).
        atr_floor: lower clip of a well-formed episode's ATR in :func:`trajectory_reward`; a format
            failure scores at most ``w_atr * atr_floor - fmt_penalty``. The default ``-2.0`` is below
            every well-formed ATR of up to 7 turns under the default constants (it only clips
            longer, heavily oscillating episodes).
        allow_non_dissipative: accept ``beta <= alpha`` (for ablations); otherwise it raises.
    """

    alpha: float = 1.0
    beta: float = 2.0
    gamma: float = 0.05
    lam: float = 0.5
    bins: tuple[float, ...] = (0.0, 0.34, 0.67, 1.0)
    mode: ATRMode = ATRMode.MATRIX
    normalize_by_turns: bool = False
    turn_cost: float | None = None
    w_ex: float = 1.0
    w_atr: float = 1.0
    fmt_penalty: float = 1.0
    atr_floor: float = -2.0
    allow_non_dissipative: bool = field(default=False)

    def __post_init__(self) -> None:
        self.mode = ATRMode(self.mode)
        self.bins = tuple(float(b) for b in self.bins)
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0 (a stagnation cost), got {self.gamma}")
        if self.beta <= self.alpha and not self.allow_non_dissipative:
            raise ValueError(
                f"beta must be > alpha so that regressions cost more than improvements earn "
                f"(the dissipative condition); got alpha={self.alpha}, beta={self.beta}. "
                f"Pass allow_non_dissipative=True for an ablation."
            )
        b = self.bins
        if (
            len(b) < 2
            or b[0] != 0.0
            or b[-1] != 1.0
            or any(x >= y for x, y in itertools.pairwise(b))
        ):
            raise ValueError(
                f"bins must be strictly increasing edges from 0.0 to 1.0 (at least two), got {b}"
            )
        if self.turn_cost is not None and self.turn_cost < 0:
            raise ValueError(f"turn_cost must be >= 0, got {self.turn_cost}")
        if self.w_ex < 0 or self.w_atr < 0:
            raise ValueError(
                f"w_ex and w_atr must be >= 0, got w_ex={self.w_ex}, w_atr={self.w_atr}"
            )
        if not self.fmt_penalty > 0:
            raise ValueError(
                f"fmt_penalty must be > 0 so that a format failure (e.g. no final answer) scores "
                f"below every well-formed episode, got {self.fmt_penalty}"
            )
        if not math.isfinite(self.atr_floor):
            raise ValueError(f"atr_floor must be a finite number, got {self.atr_floor}")

    @property
    def effective_turn_cost(self) -> float:
        """``turn_cost``, or its mode-dependent default when ``None``."""
        if self.turn_cost is not None:
            return float(self.turn_cost)
        return 0.0 if self.normalize_by_turns else 0.02

    @property
    def n_states(self) -> int:
        """``K + 1``: error state, one state per bin, exact-match state."""
        return len(self.bins) + 1


def build_transition_matrix(cfg: ATRConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The asymmetric transition matrix ``W`` and the state values ``v`` (spec §2.3).

    Returns:
        ``(W, values)`` with ``W`` of shape ``[K+1, K+1]`` and ``values`` of shape ``[K+1]``:
        ``v(0) = 0`` (error / no SQL), ``v(1..K-1)`` = bin midpoints, ``v(K) = 1`` (exact match).
    """
    cfg = cfg or ATRConfig()
    edges = np.asarray(cfg.bins, dtype=float)
    mids = (edges[:-1] + edges[1:]) / 2
    values = np.concatenate([[0.0], mids, [1.0]])
    diff = values[None, :] - values[:, None]  # v_j - v_i
    W = np.where(diff > 0, cfg.alpha * diff, np.where(diff < 0, cfg.beta * diff, 0.0))
    np.fill_diagonal(W, -cfg.gamma)
    W[-1, -1] = 0.0
    return W, values


def score_to_state(score: float, is_error: bool, cfg: ATRConfig | None = None) -> int:
    """The process state of one turn: 0 = error / no SQL, ``K`` = exact match (score 1), else its bin."""
    cfg = cfg or ATRConfig()
    _check_score(score)
    if is_error:
        return 0
    if score >= 1.0:
        return cfg.n_states - 1
    # bins are [e_0, e_1), [e_1, e_2), ..., [e_{k-1}, 1.0)
    idx = int(np.searchsorted(np.asarray(cfg.bins), score, side="right")) - 1
    return 1 + min(max(idx, 0), len(cfg.bins) - 2)


def state_path(
    turn_scores: Sequence[float],
    turn_errors: Sequence[bool] | None = None,
    cfg: ATRConfig | None = None,
) -> list[int]:
    """``[z_0 = 0, z_1, ..., z_T]`` for a trajectory."""
    cfg = cfg or ATRConfig()
    scores, errors = _check_trajectory(turn_scores, turn_errors)
    return [0] + [score_to_state(s, e, cfg) for s, e in zip(scores, errors, strict=True)]


def transition_sum(
    turn_scores: Sequence[float],
    turn_errors: Sequence[bool] | None = None,
    cfg: ATRConfig | None = None,
    W: np.ndarray | None = None,
) -> float:
    """``sum_t W[z_{t-1}, z_t]`` (matrix mode) or ``sum_t W(s_t - s_{t-1})`` (continuous mode)."""
    cfg = cfg or ATRConfig()
    scores, errors = _check_trajectory(turn_scores, turn_errors)
    if cfg.mode is ATRMode.CONTINUOUS and W is None:
        prev, total = 0.0, 0.0
        for s, e in zip(scores, errors, strict=True):
            s = 0.0 if e else s
            d = s - prev
            if d > 0:
                total += cfg.alpha * d
            elif d < 0:
                total += cfg.beta * d
            elif s < 1.0:
                total -= cfg.gamma
            prev = s
        return total
    if W is None:
        W, _ = build_transition_matrix(cfg)
    W = np.asarray(W, dtype=float)
    path = state_path(scores, errors, cfg)
    if W.shape != (cfg.n_states, cfg.n_states):
        raise ValueError(
            f"W must be {cfg.n_states}x{cfg.n_states} for bins {cfg.bins}, got shape {W.shape}"
        )
    return float(sum(W[a, b] for a, b in itertools.pairwise(path)))


def aggregate_trajectory_reward(
    turn_scores: Sequence[float],
    turn_errors: Sequence[bool] | None = None,
    cfg: ATRConfig | None = None,
    W: np.ndarray | None = None,
) -> float:
    """ATR of one trajectory (spec §2.3).

    ``ATR = s_T + lam * sum_t W[z_{t-1}, z_t] - turn_cost * T`` (divided by ``max(1, T)`` inside
    when ``cfg.normalize_by_turns``). An empty trajectory scores 0.

    Args:
        turn_scores: CSMR of each executed turn, each in ``[0, 1]``.
        turn_errors: whether each turn failed to execute (error / no SQL); defaults to all ``False``.
        cfg: the constants (defaults: :class:`ATRConfig`).
        W: a custom ``[K+1, K+1]`` transition matrix (matrix mode).

    Raises:
        ValueError: a score outside ``[0, 1]``, or ``len(turn_errors) != len(turn_scores)``.
    """
    cfg = cfg or ATRConfig()
    scores, errors = _check_trajectory(turn_scores, turn_errors)
    T = len(scores)
    if T == 0:
        return 0.0
    s_T = 0.0 if errors[-1] else scores[-1]
    total = transition_sum(scores, errors, cfg, W)
    if cfg.normalize_by_turns:
        total /= max(1, T)
    return float(s_T + cfg.lam * total - cfg.effective_turn_cost * T)


def trajectory_reward(
    turn_scores: Sequence[float],
    turn_errors: Sequence[bool] | None = None,
    *,
    final_ex: bool,
    format_ok: bool = True,
    cfg: ATRConfig | None = None,
    W: np.ndarray | None = None,
) -> float:
    """``R(tau)`` of one episode (spec §2.3, with the format failure as the error state).

    Well-formed (``format_ok``): ``w_ex * EX_final + w_atr * max(ATR, atr_floor)``, where
    ``turn_scores`` end with the final answer's score.

    Format failure (no final answer, or a malformed one): the episode ends in the error state. Its
    turns are followed by a transition to state 0 (``s_T = 0``, no EX), giving ``ATR_err <= 0`` (a
    closed walk from the start state, non-positive for a dissipative ``W``), and the reward is
    ``w_atr * (atr_floor + min(0, ATR_err)) - fmt_penalty``: strictly below every well-formed
    episode, still lower the more turns were wasted.
    """
    cfg = cfg or ATRConfig()
    if format_ok:
        atr = max(aggregate_trajectory_reward(turn_scores, turn_errors, cfg, W), cfg.atr_floor)
        return float(cfg.w_ex * float(bool(final_ex)) + cfg.w_atr * atr)
    scores, errors = _check_trajectory(turn_scores, turn_errors)
    atr_err = aggregate_trajectory_reward([*scores, 0.0], [*errors, True], cfg, W)
    return float(cfg.w_atr * (cfg.atr_floor + min(0.0, atr_err)) - cfg.fmt_penalty)


def check_dissipative(W: np.ndarray, values: np.ndarray, tol: float = 1e-9) -> bool:
    """True when every cycle of ``W`` has negative weight (the energy-dissipation property).

    The only closed walk allowed a zero weight is resting at the goal (the state(s) of highest
    value, energy ``V = 1 - v = 0``): its self loop must be ``<= tol``. Every other cycle must weigh
    ``< -tol``. Checked with a max-plus Floyd–Warshall: after relaxation ``D[i, i]`` is the
    heaviest cycle through ``i``.
    """
    W = np.asarray(W, dtype=float)
    values = np.asarray(values, dtype=float)
    n = W.shape[0]
    if W.ndim != 2 or W.shape != (n, n) or values.shape != (n,):
        raise ValueError(
            f"W must be square and values must have one entry per state; got W {W.shape}, values {values.shape}"
        )
    goal = np.isclose(values, values.max())
    if np.any(W[goal, goal] > tol):  # resting at the goal must not earn reward
        return False
    D = W.copy()
    D[np.diag_indices(n)] = np.where(goal, -np.inf, np.diag(W))
    for k in range(n):
        D = np.maximum(D, D[:, [k]] + D[[k], :])
    return bool(np.all(np.diag(D) < -tol))


def _check_score(score: float) -> None:
    if not (0.0 <= float(score) <= 1.0):
        raise ValueError(f"turn scores must be in [0, 1], got {score}")


def _check_trajectory(
    turn_scores: Sequence[float], turn_errors: Sequence[bool] | None
) -> tuple[list[float], list[bool]]:
    scores = [float(s) for s in turn_scores]
    for s in scores:
        _check_score(s)
    if turn_errors is None:
        errors = [False] * len(scores)
    else:
        errors = [bool(e) for e in turn_errors]
        if len(errors) != len(scores):
            raise ValueError(
                f"turn_errors has {len(errors)} entries but turn_scores has {len(scores)}; they must match"
            )
    return scores, errors
