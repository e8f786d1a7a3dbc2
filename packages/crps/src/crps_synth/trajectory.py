"""The data that flows between the stages: trajectories, contrast pairs, critiques, synthesized paths.

Every record is a dataclass with ``to_dict`` / ``from_dict`` (plain JSON types), so each stage's JSONL
output round-trips exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ContrastType = Literal["hard", "soft"]


@dataclass
class Trajectory:
    """One complete MCTS trajectory (spec 2.1).

    Attributes:
        steps: reasoning steps from the root to the end of the rollout (or the tree prefix only with
            ``MCTSConfig(official_compat=True)``).
        is_correct: the verified final answer equals the gold answer.
        reward: the rollout's terminal reward (1.0 correct / 0.0 otherwise).
        visit_count: N of the terminal tree node when the search ended.
        length: ``len(steps)``.
        max_q_value: max Q over the visited tree nodes on the path.
        final_answer: the extracted ``\\boxed{}`` answer, or None.
    """

    steps: list[str]
    is_correct: bool
    reward: float
    visit_count: int
    length: int
    max_q_value: float
    final_answer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(
            steps=list(d["steps"]),
            is_correct=bool(d["is_correct"]),
            reward=float(d["reward"]),
            visit_count=int(d["visit_count"]),
            length=int(d.get("length", len(d["steps"]))),
            max_q_value=float(d["max_q_value"]),
            final_answer=d.get("final_answer"),
        )


@dataclass
class ContrastivePair:
    """τ+ (anchor) against one negative τ− of the same problem."""

    problem: str
    positive: Trajectory
    negative: Trajectory
    contrast_type: ContrastType
    problem_id: str = ""
    gold: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "problem": self.problem,
            "gold": self.gold,
            "contrast_type": self.contrast_type,
            "positive": self.positive.to_dict(),
            "negative": self.negative.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContrastivePair:
        return cls(
            problem=d["problem"],
            positive=Trajectory.from_dict(d["positive"]),
            negative=Trajectory.from_dict(d["negative"]),
            contrast_type=d["contrast_type"],
            problem_id=str(d.get("problem_id", "")),
            gold=str(d.get("gold", "")),
        )


@dataclass
class ContrastiveCritique:
    """The analyst's structured critique of one pair (spec 2.4).

    ``divergence_step_index`` is the value used downstream (the deterministic common-prefix index
    when ``ContrastiveAnalyzer(override_divergence=True)``); ``llm_divergence_step_index`` is what
    the analyst said (None when it gave none).
    """

    problem: str
    divergence_step_index: int
    local_step_critique: dict[str, str]
    global_strategic_analysis: str
    success_pattern: str
    failure_mode_to_avoid: str
    raw_response: str
    contrast_type: ContrastType
    problem_id: str = ""
    gold: str = ""
    llm_divergence_step_index: int | None = None
    pair: ContrastivePair | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "pair"}
        d["pair"] = None if self.pair is None else self.pair.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContrastiveCritique:
        return cls(
            problem=d["problem"],
            divergence_step_index=int(d["divergence_step_index"]),
            local_step_critique=dict(d.get("local_step_critique") or {}),
            global_strategic_analysis=str(d.get("global_strategic_analysis", "")),
            success_pattern=str(d.get("success_pattern", "")),
            failure_mode_to_avoid=str(d.get("failure_mode_to_avoid", "")),
            raw_response=str(d.get("raw_response", "")),
            contrast_type=d["contrast_type"],
            problem_id=str(d.get("problem_id", "")),
            gold=str(d.get("gold", "")),
            llm_divergence_step_index=d.get("llm_divergence_step_index"),
            pair=None if d.get("pair") is None else ContrastivePair.from_dict(d["pair"]),
        )


@dataclass
class SynthesizedPath:
    """A new solution written from a critique; ``verified`` = its boxed answer equals the gold."""

    problem: str
    steps: list[str]
    final_answer: str | None
    critique: ContrastiveCritique
    verified: bool
    problem_id: str = ""
    raw_response: str = ""
    rejected_reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def solution(self) -> str:
        """The steps as SFT text (``Step k: ...`` lines)."""
        from crps_synth.steps import format_steps

        return format_steps(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "problem": self.problem,
            "steps": list(self.steps),
            "final_answer": self.final_answer,
            "verified": self.verified,
            "rejected_reason": self.rejected_reason,
            "raw_response": self.raw_response,
            "critique": self.critique.to_dict(),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthesizedPath:
        return cls(
            problem=d["problem"],
            steps=list(d["steps"]),
            final_answer=d.get("final_answer"),
            critique=ContrastiveCritique.from_dict(d["critique"]),
            verified=bool(d["verified"]),
            problem_id=str(d.get("problem_id", "")),
            raw_response=str(d.get("raw_response", "")),
            rejected_reason=d.get("rejected_reason"),
            meta=dict(d.get("meta") or {}),
        )
