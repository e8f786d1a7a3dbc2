"""Phase 2b: pattern-informed synthesis and verification (spec 2.5–2.6, released
``crps/synthesis``).

The analyst gets the problem and the critique's guidance (never the two trajectories) and writes a
fresh solution as ``Step N: …`` lines with the answer in ``\\boxed{}`` (temperature 0, 2048 tokens).
The reply is split with :func:`~crps_synth.steps.parse_steps`; the path is kept only when

* it has steps and a ``\\boxed{}`` answer (else ``rejected_reason="no_boxed"`` / ``"no_steps"``),
* it reads as a standalone solution: no "Trajectory A/B", "critique", "success pattern", … (else
  ``"leakage"``),
* its answer verifies against the gold answer (else ``"wrong_answer"``).
"""

from __future__ import annotations

import logging
import re

from crps_synth.llm import ChatLLM
from crps_synth.steps import parse_steps
from crps_synth.trajectory import ContrastiveCritique, SynthesizedPath
from crps_synth.verify import Verifier

logger = logging.getLogger(__name__)

SYNTH_SYSTEM = (
    "You are an expert mathematician who writes clear, correct step-by-step solutions. Write only "
    "the solution."
)

SYNTH_TEMPLATE = """Problem:
{problem}

Lessons from earlier attempts at this problem:
- The decisive point: {critique_of_difference}
- Strategy: {global_strategic_analysis}
- Do: {success_pattern}
- Avoid: {failure_mode_to_avoid}

Write a complete new solution that applies these lessons. Format every step as "Step N: ..." on its
own line and put the final answer in \\boxed{{}} in the last step. Do not mention earlier attempts."""

LEAKAGE = re.compile(
    r"trajector(?:y|ies)\s+[AB]\b|\bcritique\b|success[_ ]pattern|failure[_ ]mode|earlier attempts?|"
    r"\bthe analysis\b|\blessons?\b",
    re.IGNORECASE,
)


class PathSynthesizer:
    """Writes and verifies a new solution from a critique (see the module doc).

    Args:
        llm: the analyst model (:class:`~crps_synth.llm.ChatLLM`).
        verifier: checks the boxed answer against the critique's gold answer; ``None`` keeps paths
            unverified (``verified=False``, ``rejected_reason="unverified"``).
        temperature, max_tokens: synthesis sampling (0.0, 2048).
    """

    def __init__(
        self,
        llm: ChatLLM,
        verifier: Verifier | None = None,
        temperature: float = 0.0,
        max_tokens: int = 2048,
        *,
        system_prompt: str = SYNTH_SYSTEM,
        template: str = SYNTH_TEMPLATE,
    ):
        if not callable(getattr(llm, "chat", None)):
            raise TypeError(
                f"llm must have a chat(system, user, ...) method, got {type(llm).__name__}"
            )
        self.llm = llm
        self.verifier = verifier
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.template = template

    def prompt(self, critique: ContrastiveCritique) -> str:
        local = critique.local_step_critique
        return self.template.format(
            problem=critique.problem,
            critique_of_difference=local.get("critique_of_difference", "") or "-",
            global_strategic_analysis=critique.global_strategic_analysis or "-",
            success_pattern=critique.success_pattern or "-",
            failure_mode_to_avoid=critique.failure_mode_to_avoid or "-",
        )

    def synthesize(self, critique: ContrastiveCritique) -> SynthesizedPath:
        reply = self.llm.chat(
            self.system_prompt,
            self.prompt(critique),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        return self.check(critique, reply)

    def check(self, critique: ContrastiveCritique, reply: str) -> SynthesizedPath:
        """Parse and verify a synthesis reply (see the module doc)."""
        steps = parse_steps(reply)
        text = "\n".join(steps)
        answer = self.verifier.extract(text) if self.verifier is not None else None
        if answer is None and self.verifier is None:
            from crps_synth.verify import extract_boxed

            answer = extract_boxed(text)
        reason: str | None = None
        verified = False
        if not steps:
            reason = "no_steps"
        elif answer is None:
            reason = "no_boxed"
        elif LEAKAGE.search(text):
            reason = "leakage"
        elif self.verifier is None:
            reason = "unverified"
        elif not critique.gold:
            raise ValueError(
                f"critique of problem {critique.problem_id!r} has no gold answer; verification needs it"
            )
        else:
            verified = self.verifier.equivalent(answer, critique.gold)
            reason = None if verified else "wrong_answer"
        return SynthesizedPath(
            problem=critique.problem,
            steps=steps,
            final_answer=answer,
            critique=critique,
            verified=verified,
            problem_id=critique.problem_id,
            raw_response=reply,
            rejected_reason=reason,
        )
