"""Phase 2a: dual-granularity contrastive analysis (spec 2.4, released ``crps/analysis/contrastive.py``).

The analyst sees the problem, τ+ as "Trajectory A" and τ− as "Trajectory B", and returns JSON::

    {"divergence_step_index": int,
     "local_step_critique": {"trajectory_a_logic": str, "trajectory_b_logic": str,
                             "critique_of_difference": str},
     "global_strategic_analysis": str,
     "synthesized_guidance": {"success_pattern": str, "failure_mode_to_avoid": str}}

:func:`parse_critique` reads it from imperfect output: a fenced ```json block, else the outermost
braces; then strict JSON; then repair (raw newlines / tabs inside strings escaped, bare LaTeX
backslashes escaped, trailing commas removed, a truncated object closed); then a regex fallback on
the fields. A critique with neither a divergence index ≥ 0 nor a global analysis is rejected.

:class:`ContrastiveAnalyzer` retries a failed parse ``max_retries`` times, then drops the pair; it
raises :class:`~crps_synth.errors.CritiqueParseError` when the share of dropped pairs exceeds
``max_parse_failure_rate`` (checked once ``min_pairs_for_rate`` pairs were analysed, and by
:meth:`ContrastiveAnalyzer.check_failure_rate` at the end of a run): that is a prompt or model
problem, not noise. Analyst exceptions (a server down) propagate.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crps_synth.errors import ConfigError, CritiqueParseError
from crps_synth.llm import ChatLLM
from crps_synth.steps import divergence_index
from crps_synth.trajectory import ContrastiveCritique, ContrastivePair

logger = logging.getLogger(__name__)

ANALYST_SYSTEM = (
    "You are a careful mathematics teacher. You compare two step-by-step solutions of the same "
    "problem and explain, precisely and briefly, where and why they part ways. Reply with one JSON "
    "object only."
)

ANALYST_TEMPLATE = """Problem:
{problem}

Trajectory A ({a_outcome}):
{a_steps}

Trajectory B ({b_outcome}):
{b_steps}

Compare the two trajectories and answer with a JSON object with exactly these fields:
{{"divergence_step_index": <0-based index of the first step where A and B differ>,
 "local_step_critique": {{"trajectory_a_logic": "<what A does at that step>",
                          "trajectory_b_logic": "<what B does at that step>",
                          "critique_of_difference": "<why A's step is better>"}},
 "global_strategic_analysis": "<how the overall strategies differ>",
 "synthesized_guidance": {{"success_pattern": "<what to keep doing>",
                           "failure_mode_to_avoid": "<the mistake to avoid>"}}}}"""

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_VALID_ESCAPE = set('"\\/bfnrtu')


def _extract_object(text: str) -> str | None:
    m = _FENCE.search(text)
    body = m.group(1) if m and "{" in m.group(1) else text
    start = body.find("{")
    if start < 0:
        return None
    depth, in_str, esc = 0, False, False
    for i in range(start, len(body)):
        c = body[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return body[start : i + 1]
    return body[start:]  # never closed: truncated


def _repair(s: str) -> str:
    """Escape raw control characters and bare backslashes inside strings, drop trailing commas,
    close a truncated string / object."""
    out: list[str] = []
    stack: list[str] = []
    in_str = False
    i = 0
    while i < len(s):
        c = s[i]
        if in_str:
            if c == "\\":
                nxt = s[i + 1] if i + 1 < len(s) else ""
                after = s[i + 2] if i + 2 < len(s) else ""
                latex = nxt.isalpha() and (nxt not in "bfnrtu" or after.isalpha())
                if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[i + 2 : i + 6] or ""):
                    latex = False
                if nxt in _VALID_ESCAPE and not latex:
                    out.append(c + nxt)
                    i += 2
                    continue
                out.append("\\\\")  # LaTeX command or stray backslash: keep it literally
                i += 1
                continue
            if c == '"':
                in_str = False
            elif c == "\n":
                c = "\\n"
            elif c == "\t":
                c = "\\t"
            elif c == "\r":
                c = "\\r"
            out.append(c)
        else:
            if c == '"':
                in_str = True
            elif c in "{[":
                stack.append("}" if c == "{" else "]")
            elif c in "}]" and stack:
                stack.pop()
            out.append(c)
        i += 1
    text = "".join(out)
    if in_str:
        text += '"'
    text = text.rstrip()
    if text.endswith(":"):
        text += ' ""'
    text = text.rstrip(",").rstrip()
    text += "".join(reversed(stack))
    return re.sub(r",\s*([}\]])", r"\1", text)


def _has_control_artifacts(obj: Any) -> bool:
    """Formfeed / backspace in a parsed string: a ``\\frac`` / ``\\beta`` read as a JSON escape."""
    if isinstance(obj, str):
        return "\x0c" in obj or "\x08" in obj
    if isinstance(obj, dict):
        return any(_has_control_artifacts(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_control_artifacts(v) for v in obj)
    return False


_STR_FIELDS = (
    "trajectory_a_logic",
    "trajectory_b_logic",
    "critique_of_difference",
    "global_strategic_analysis",
    "success_pattern",
    "failure_mode_to_avoid",
)


def _regex_fallback(text: str) -> dict[str, Any] | None:
    got: dict[str, Any] = {}
    m = re.search(r'"?divergence_step_index"?\s*[:=]\s*"?(-?\d+)', text)
    if m:
        got["divergence_step_index"] = int(m.group(1))
    for name in _STR_FIELDS:
        m = re.search(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)', text, re.DOTALL)
        if m:
            got[name] = m.group(1).replace('\\"', '"').replace("\\n", "\n").strip()
    if not got:
        return None
    return {
        "divergence_step_index": got.get("divergence_step_index", -1),
        "local_step_critique": {
            k: got[k]
            for k in ("trajectory_a_logic", "trajectory_b_logic", "critique_of_difference")
            if k in got
        },
        "global_strategic_analysis": got.get("global_strategic_analysis", ""),
        "synthesized_guidance": {
            k: got[k] for k in ("success_pattern", "failure_mode_to_avoid") if k in got
        },
    }


def _normalize_fields(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    try:
        div = int(obj.get("divergence_step_index", -1))
    except (TypeError, ValueError):
        div = -1
    local = obj.get("local_step_critique") or {}
    guide = obj.get("synthesized_guidance") or {}
    if not isinstance(local, dict):
        local = {"critique_of_difference": str(local)}
    if not isinstance(guide, dict):
        guide = {"success_pattern": str(guide)}
    glob = obj.get("global_strategic_analysis") or ""
    out = {
        "divergence_step_index": div,
        "local_step_critique": {str(k): str(v) for k, v in local.items()},
        "global_strategic_analysis": str(glob).strip(),
        "success_pattern": str(
            guide.get("success_pattern", obj.get("success_pattern", ""))
        ).strip(),
        "failure_mode_to_avoid": str(
            guide.get("failure_mode_to_avoid", obj.get("failure_mode_to_avoid", ""))
        ).strip(),
    }
    if out["divergence_step_index"] < 0 and not out["global_strategic_analysis"]:
        return None
    return out


def parse_critique(text: str) -> dict[str, Any] | None:
    """The critique fields from an analyst reply, or None when nothing usable is in it.

    Returns ``{"divergence_step_index", "local_step_critique", "global_strategic_analysis",
    "success_pattern", "failure_mode_to_avoid"}`` (see the module doc for the parse order).
    """
    if not isinstance(text, str):
        raise TypeError(f"analyst reply must be a string, got {type(text).__name__}")
    candidate = _extract_object(text)
    if candidate is not None:
        try:
            obj = json.loads(candidate)
            if not _has_control_artifacts(obj):
                return _normalize_fields(obj)
        except json.JSONDecodeError:
            pass
        try:
            return _normalize_fields(json.loads(_repair(candidate)))
        except json.JSONDecodeError:
            pass
    fallback = _regex_fallback(text)
    return None if fallback is None else _normalize_fields(fallback)


def render_steps(steps: Sequence[str], *, focus: int | None = None, max_steps: int = 24) -> str:
    """Numbered steps (0-based, as the divergence index); longer lists keep the first and last steps
    and the neighbourhood of ``focus``, with ``[... k steps omitted ...]`` markers."""
    n = len(steps)
    if n == 0:
        return "(no steps)"
    keep = set(range(n))
    if n > max_steps:
        keep = set(range(3)) | set(range(n - 3, n))
        if focus is not None:
            keep |= set(range(max(0, focus - 3), min(n, focus + 4)))
    lines, skipped = [], 0
    for i, s in enumerate(steps):
        if i in keep:
            if skipped:
                lines.append(f"[... {skipped} steps omitted ...]")
                skipped = 0
            lines.append(f"[{i}] {s}")
        else:
            skipped += 1
    if skipped:
        lines.append(f"[... {skipped} steps omitted ...]")
    return "\n".join(lines)


class ContrastiveAnalyzer:
    """Asks the analyst for a structured critique of each pair (see the module doc).

    Args:
        llm: the analyst (:class:`~crps_synth.llm.ChatLLM`).
        temperature, max_tokens: analyst sampling (0.7, 1024).
        max_retries: extra attempts after an unparsable reply (2).
        max_parse_failure_rate: share of dropped pairs above which analysis stops with an error (0.5).
        min_pairs_for_rate: pairs analysed before the rate is checked mid-run (20).
        override_divergence: use the deterministic common-prefix index (normalized step match)
            instead of the analyst's value [inferred]; the analyst's value is kept in
            ``llm_divergence_step_index``. Off: the analyst's value, clamped to
            ``[0, min(len τ+, len τ−)]``.
        max_prompt_steps: longer trajectories are shortened around the divergence step.
    """

    def __init__(
        self,
        llm: ChatLLM,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        *,
        max_retries: int = 2,
        max_parse_failure_rate: float = 0.5,
        min_pairs_for_rate: int = 20,
        override_divergence: bool = True,
        max_prompt_steps: int = 24,
        system_prompt: str = ANALYST_SYSTEM,
        template: str = ANALYST_TEMPLATE,
    ):
        if not callable(getattr(llm, "chat", None)):
            raise TypeError(
                f"llm must have a chat(system, user, ...) method, got {type(llm).__name__}"
            )
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if not 0.0 <= max_parse_failure_rate <= 1.0:
            raise ConfigError(
                f"max_parse_failure_rate must be in [0, 1], got {max_parse_failure_rate}"
            )
        self.llm = llm
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.max_parse_failure_rate = max_parse_failure_rate
        self.min_pairs_for_rate = min_pairs_for_rate
        self.override_divergence = override_divergence
        self.max_prompt_steps = max_prompt_steps
        self.system_prompt = system_prompt
        self.template = template
        self.n_pairs = 0
        self.n_dropped = 0
        self.n_bad_replies = 0
        self._lock = threading.Lock()

    def prompt(self, pair: ContrastivePair) -> str:
        focus = divergence_index(pair.positive.steps, pair.negative.steps)
        b_outcome = "correct, but longer" if pair.negative.is_correct else "incorrect final answer"
        return self.template.format(
            problem=pair.problem,
            a_outcome="correct",
            b_outcome=b_outcome,
            a_steps=render_steps(pair.positive.steps, focus=focus, max_steps=self.max_prompt_steps),
            b_steps=render_steps(pair.negative.steps, focus=focus, max_steps=self.max_prompt_steps),
        )

    def analyze(self, pair: ContrastivePair) -> ContrastiveCritique | None:
        """One critique, or None after ``1 + max_retries`` unparsable replies (the pair is dropped)."""
        user = self.prompt(pair)
        parsed, reply = None, ""
        for attempt in range(1 + self.max_retries):
            reply = self.llm.chat(
                self.system_prompt, user, temperature=self.temperature, max_tokens=self.max_tokens
            )
            parsed = parse_critique(reply)
            if parsed is not None:
                break
            with self._lock:
                self.n_bad_replies += 1
            logger.info(
                "unparsable analyst reply (attempt %d) for problem %s", attempt + 1, pair.problem_id
            )
        with self._lock:
            self.n_pairs += 1
            self.n_dropped += parsed is None
        if parsed is None:
            return None
        det = divergence_index(pair.positive.steps, pair.negative.steps)
        llm_div = parsed["divergence_step_index"]
        hi = min(len(pair.positive.steps), len(pair.negative.steps))
        if self.override_divergence:
            div = det
            if llm_div >= 0 and llm_div != det:
                logger.debug("analyst divergence %d overridden by common prefix %d", llm_div, det)
        else:
            div = min(max(llm_div, 0), hi)
            if div != llm_div:
                logger.info("divergence_step_index %d clamped to %d", llm_div, div)
        return ContrastiveCritique(
            problem=pair.problem,
            divergence_step_index=div,
            local_step_critique=parsed["local_step_critique"],
            global_strategic_analysis=parsed["global_strategic_analysis"],
            success_pattern=parsed["success_pattern"],
            failure_mode_to_avoid=parsed["failure_mode_to_avoid"],
            raw_response=reply,
            contrast_type=pair.contrast_type,
            problem_id=pair.problem_id,
            gold=pair.gold,
            llm_divergence_step_index=llm_div if llm_div >= 0 else None,
            pair=pair,
        )

    def batch_analyze(
        self, pairs: Sequence[ContrastivePair], max_workers: int = 4
    ) -> list[ContrastiveCritique | None]:
        """:meth:`analyze` over ``pairs`` in a thread pool; results in input order."""
        if max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, got {max_workers}")
        if max_workers == 1 or len(pairs) <= 1:
            out = [self.analyze(p) for p in pairs]
        else:
            with ThreadPoolExecutor(
                max_workers=max_workers, thread_name_prefix="crps-analyst"
            ) as ex:
                out = list(ex.map(self.analyze, pairs))
        self.check_failure_rate(final=False)
        return out

    @property
    def failure_rate(self) -> float:
        return self.n_dropped / self.n_pairs if self.n_pairs else 0.0

    def check_failure_rate(self, *, final: bool = True) -> None:
        """Raise :class:`CritiqueParseError` when the dropped share exceeds the limit."""
        checked = self.n_pairs and (final or self.n_pairs >= self.min_pairs_for_rate)
        if checked and self.failure_rate > self.max_parse_failure_rate:
            raise CritiqueParseError(
                f"{self.n_dropped} of {self.n_pairs} pairs ({self.failure_rate:.0%}) got no parsable "
                f"critique after {1 + self.max_retries} attempts, above max_parse_failure_rate="
                f"{self.max_parse_failure_rate:.0%}; check the analyst model and prompt (expected "
                "one JSON object per reply)"
            )
        if final and self.n_pairs:
            logger.info(
                "critique parse failure rate %.1f%% (%d/%d)",
                100 * self.failure_rate,
                self.n_dropped,
                self.n_pairs,
            )
