"""Stage 2: route each input to the short path (direct verdict) or the long path (CoT + scorer).

``route(x) = SHORT if consensus(x) >= τ else LONG`` (E-GRM §2.2; τ = 0.8 with M = 5 means at least 4
of 5 must agree). The comparison is made on counts (``count >= τ·M``, with a 1e-9 tolerance), so
``τ = 0.6`` and ``3/5`` meet exactly despite binary floating point.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from egrm_reward.consensus import ConsensusResult
from egrm_reward.errors import ThresholdError


class Route(enum.StrEnum):
    SHORT = "short"
    LONG = "long"


@dataclass(frozen=True)
class RouteDecision:
    """The route, and why: the consensus and the threshold it was compared with."""

    route: Route
    consensus: float
    tau: float
    reason: str

    @property
    def use_cot(self) -> bool:
        return self.route is Route.LONG


def check_tau(tau: float) -> float:
    """τ must lie in (0, 1]; τ > 1 would mean "always CoT" (use ``always_cot=True``)."""
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or tau != tau:
        raise ThresholdError(f"tau must be a number in (0, 1], got {tau!r}")
    if not 0 < tau <= 1:
        hint = " (for 'always CoT' use always_cot=True)" if tau > 1 else ""
        raise ThresholdError(f"tau must lie in (0, 1], got {tau}{hint}")
    return float(tau)


class CoTRouter:
    """The consensus gate.

    Args:
        tau: consensus threshold τ ∈ (0, 1]; τ ≤ 1/M never triggers CoT.
        always_cot: route every input to LONG (the always-CoT baseline).
        never_cot: route every input to SHORT (the direct-only baseline).
    """

    def __init__(self, tau: float = 0.8, always_cot: bool = False, never_cot: bool = False):
        self.tau = check_tau(tau)
        if always_cot and never_cot:
            raise ThresholdError("always_cot and never_cot cannot both be set")
        self.always_cot = always_cot
        self.never_cot = never_cot

    def decide(self, cr: ConsensusResult) -> RouteDecision:
        if self.always_cot:
            return RouteDecision(Route.LONG, cr.consensus, self.tau, "always_cot")
        if self.never_cot:
            return RouteDecision(Route.SHORT, cr.consensus, self.tau, "never_cot")
        if cr.modal_answer is None:
            return RouteDecision(Route.LONG, cr.consensus, self.tau, "unparseable")
        if cr.count >= self.tau * cr.m - 1e-9:
            return RouteDecision(Route.SHORT, cr.consensus, self.tau, "consensus>=tau")
        return RouteDecision(Route.LONG, cr.consensus, self.tau, "consensus<tau")


class RandomRouter:
    """The random-gate baseline: LONG with probability ``rate`` regardless of consensus (seeded).

    Used to check that the consensus gate is informative: compare at the same trigger rate.
    """

    def __init__(self, rate: float, seed: int = 0):
        if not 0 <= rate <= 1:
            raise ThresholdError(f"random gate rate must lie in [0, 1], got {rate}")
        self.rate = float(rate)
        self.tau = float("nan")
        self._rng = random.Random(seed)

    def decide(self, cr: ConsensusResult) -> RouteDecision:
        long = self._rng.random() < self.rate
        return RouteDecision(
            Route.LONG if long else Route.SHORT, cr.consensus, self.tau, f"random(rate={self.rate})"
        )
