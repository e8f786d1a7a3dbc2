"""Guards: anything with ``judge(x: GuardInput) -> GuardVerdict`` (spec §3, §5).

* :class:`BackendGuard` — any papercore generation backend (transformers / vLLM / OpenAI-compatible);
  :class:`HFGuard` builds one over a transformers model. Sampling as released: temperature 0.1, top_p 0.9;
  an unparsable output is re-sampled up to ``retries`` times in total before the fail-closed verdict.
* :class:`LLMJudgeGuard` — a zero-shot judge over any ``callable(prompt_text) -> text``.
* :class:`RuleGuard` — no model: argument provenance (where each argument value of the candidate came from).
* :class:`OracleGuard` — ground truth with a flip probability (the bench's noisy oracle).
* :class:`LlamaGuardAdapter` / :class:`Qwen3GuardAdapter` — general moderation guards' outputs mapped to
  verdicts (their models are not downloadable here: adapters are tested on their output formats).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ts_guard.errors import ConfigError
from ts_guard.parsing import RATING_LABELS, official_score, parse_guard_output, verdict_label
from ts_guard.prompt import build_guard_prompt
from ts_guard.types import GuardInput, GuardVerdict

logger = logging.getLogger(__name__)

__all__ = [
    "Guard",
    "BackendGuard",
    "HFGuard",
    "LLMJudgeGuard",
    "RuleGuard",
    "OracleGuard",
    "LlamaGuardAdapter",
    "Qwen3GuardAdapter",
    "parse_llamaguard_output",
    "parse_qwen3guard_output",
]


@runtime_checkable
class Guard(Protocol):
    """Judges one candidate tool call before it runs."""

    def judge(self, x: GuardInput) -> GuardVerdict: ...


def _check_label_space(label_space: str) -> None:
    if label_space not in ("ternary", "binary"):
        raise ConfigError(f"label_space must be 'ternary' or 'binary', got {label_space!r}")


class BackendGuard:
    """A TS-Guard-format guard over a papercore ``GenerationBackend``.

    ``official=True`` parses with the released regexes (backslash closing only); the default lenient
    parser also accepts ``</Tag>``. ``retries`` = the number of generations tried before giving up on
    an unparsable output (released: 3). Backend errors propagate (an infrastructure failure is never
    turned into a verdict).
    """

    def __init__(
        self,
        backend: Any,
        *,
        temperature: float = 0.1,
        top_p: float = 0.9,
        max_new_tokens: int = 512,
        retries: int = 3,
        seed: int | None = 0,
        official: bool = False,
        verdict_rule: str = "official",
        label_space: str = "ternary",
        template: str | Path | None = None,
        tokenizer: Any = None,
        max_prompt_tokens: int | None = None,
    ) -> None:
        from papercore.generation import SamplingConfig

        _check_label_space(label_space)
        if retries < 1:
            raise ConfigError(f"retries must be >= 1, got {retries}")
        self.backend = backend
        self.sampling = SamplingConfig(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
        )
        self.retries, self.official, self.verdict_rule, self.label_space = (
            retries,
            official,
            verdict_rule,
            label_space,
        )
        self.template, self.tokenizer, self.max_prompt_tokens = (
            template,
            tokenizer,
            max_prompt_tokens,
        )

    def prompt(self, x: GuardInput) -> list[dict[str, str]]:
        return build_guard_prompt(  # type: ignore[return-value]
            x,
            template=self.template,
            tokenizer=self.tokenizer,
            max_prompt_tokens=self.max_prompt_tokens,
            label_space=self.label_space,
        )

    def judge(self, x: GuardInput) -> GuardVerdict:
        from dataclasses import replace

        prompt = self.prompt(x)
        verdict: GuardVerdict | None = None
        for attempt in range(self.retries):
            cfg = (
                self.sampling
                if self.sampling.seed is None
                else replace(self.sampling, seed=self.sampling.seed + attempt)
            )
            text = self.backend.generate([prompt], cfg)[0][0].text
            verdict = parse_guard_output(
                text,
                official=self.official,
                label_space=self.label_space,
                verdict_rule=self.verdict_rule,  # type: ignore[arg-type]
            )
            if verdict.format_ok:
                break
            logger.info(
                "guard output unparsable (attempt %d/%d): %s",
                attempt + 1,
                self.retries,
                verdict.error,
            )
        assert verdict is not None
        verdict.unknown_tool = x.unknown_tool
        return verdict


class HFGuard(BackendGuard):
    """:class:`BackendGuard` over a transformers causal LM (``model`` object or a local directory)."""

    def __init__(self, model: Any, tokenizer: Any = None, **kwargs: Any) -> None:
        from papercore.generation import make_backend
        from papercore.models import load_model, load_tokenizer

        if isinstance(model, str | Path):
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(model))
            model = load_model(str(model))
        if tokenizer is None:
            raise ConfigError("HFGuard needs a tokenizer when model is an object, got None")
        kwargs.setdefault("tokenizer", tokenizer)
        super().__init__(make_backend("transformers", model=model, tokenizer=tokenizer), **kwargs)


class LLMJudgeGuard:
    """Zero-shot LLM-as-judge baseline: ``generate(prompt_text) -> text`` (any chat model / API).

    Uses the same prompt and lenient parser as the guard; ``retries`` re-asks on unparsable output.
    """

    def __init__(
        self,
        generate: Callable[[str], str],
        *,
        template: str | Path | None = None,
        verdict_rule: str = "official",
        label_space: str = "ternary",
        retries: int = 1,
    ) -> None:
        _check_label_space(label_space)
        if not callable(generate):
            raise ConfigError(
                f"generate must be callable(str) -> str, got {type(generate).__name__}"
            )
        self.generate, self.template, self.verdict_rule, self.label_space, self.retries = (
            generate,
            template,
            verdict_rule,
            label_space,
            max(1, retries),
        )

    def judge(self, x: GuardInput) -> GuardVerdict:
        text = build_guard_prompt(
            x, template=self.template, label_space=self.label_space, chat=False
        )
        verdict: GuardVerdict | None = None
        for _ in range(self.retries):
            verdict = parse_guard_output(
                self.generate(text), label_space=self.label_space, verdict_rule=self.verdict_rule
            )  # type: ignore[arg-type]
            if verdict.format_ok:
                break
        assert verdict is not None
        verdict.unknown_tool = x.unknown_tool
        return verdict


def _make_verdict(
    mur: bool, pi: bool, rating: float, rule: str, rationale: str, unknown: bool = False
) -> GuardVerdict:
    return GuardVerdict(
        label=verdict_label(mur, pi, rating, rule),  # type: ignore[arg-type]
        harmfulness=rating,
        malicious_request=mur,
        being_attacked=pi,
        rationale=rationale,
        raw="",
        score=official_score(mur, pi, rating),
        unknown_tool=unknown,
    )


DEFAULT_HARM_WORDS = (
    "steal",
    "ransomware",
    "malware",
    "harass",
    "phishing",
    "launder",
    "exploit",
    "doxx",
    "stalk",
    "bomb",
    "weapon",
    "blackmail",
    "fraud",
    "hack into",
    "self-harm",
)
DEFAULT_INJECTION_MARKERS = (
    "ignore previous",
    "ignore all previous",
    "ignore the previous",
    "<information>",
    "important message",
    "before you can solve the task",
    "new instructions",
    "instead, do",
    "system override",
    "todo:",
)
DEFAULT_SIDE_EFFECT = re.compile(
    r"send|transfer|delete|post|update|create|invite|share|add|remove|schedule|reserve|book|pay|write|append|rename",
    re.IGNORECASE,
)


def _values(obj: Any) -> list[str]:
    """Argument leaf values as strings (strings of ≥ 4 chars, numbers), recursively."""
    out: list[str] = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += _values(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            out += _values(v)
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, int | float):
        if abs(obj) >= 10:
            out.append(str(obj))
    elif isinstance(obj, str) and len(obj.strip()) >= 4:
        out.append(obj.strip())
    return out


@dataclass
class RuleGuard:
    """Heuristic baseline, no model: argument provenance + harmful-intent keywords.

    * MUR: the user request contains a ``harm_words`` entry → malicious, rating 1.0.
    * PI: a state-changing candidate (tool name matches ``side_effect``) has an argument value that does
      not occur in the user request but does occur in a tool observation *after* an injection marker
      (``injection_markers``) → being attacked, rating 1.0. Values found in the request, or in
      observations without a marker before them, are trusted.
    """

    harm_words: Sequence[str] = DEFAULT_HARM_WORDS
    injection_markers: Sequence[str] = DEFAULT_INJECTION_MARKERS
    side_effect: re.Pattern[str] = field(default_factory=lambda: DEFAULT_SIDE_EFFECT)
    verdict_rule: str = "official"

    def provenance(self, x: GuardInput) -> dict[str, str]:
        """For each argument value: ``"request"``, ``"injected"``, ``"observation"`` or ``"unknown"``."""
        request = x.user_request.lower()
        observations = [(s.observation or "").lower() for s in x.history]
        out: dict[str, str] = {}
        for value in _values(x.candidate.arguments):
            v = value.lower()
            if v in request:
                out[value] = "request"
                continue
            src = "unknown"
            for obs in observations:
                pos = obs.find(v)
                if pos < 0:
                    continue
                marks = [obs.find(m) for m in self.injection_markers if 0 <= obs.find(m) < pos]
                if marks:
                    src = "injected"
                    break
                src = "observation"
            out[value] = src
        return out

    def judge(self, x: GuardInput) -> GuardVerdict:
        request = x.user_request.lower()
        mur_words = [w for w in self.harm_words if w in request]
        prov = self.provenance(x)
        injected = [v for v, s in prov.items() if s == "injected"]
        pi = bool(injected) and bool(self.side_effect.search(x.candidate.name))
        mur = bool(mur_words)
        rating = 1.0 if (pi or mur) else 0.0
        why = []
        if mur:
            why.append(f"request contains harmful intent words {mur_words}")
        if pi:
            why.append(
                f"{x.candidate.name} uses values that come from injected instructions: {injected[:3]}"
            )
        return _make_verdict(
            mur,
            pi,
            rating,
            self.verdict_rule,
            "; ".join(why) or "arguments come from the user request or trusted observations",
            x.unknown_tool,
        )


class OracleGuard:
    """Ground truth with noise: ``truth(x) -> (malicious, attacked, rating)``; each decision is flipped
    (unsafe ↔ safe) with probability ``flip_prob`` using its own seeded RNG."""

    def __init__(
        self,
        truth: Callable[[GuardInput], tuple[bool, bool, float]],
        *,
        flip_prob: float = 0.1,
        seed: int = 0,
        verdict_rule: str = "official",
    ) -> None:
        if not 0 <= flip_prob <= 1:
            raise ConfigError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.truth, self.flip_prob, self.rng, self.verdict_rule = (
            truth,
            flip_prob,
            random.Random(seed),
            verdict_rule,
        )

    def judge(self, x: GuardInput) -> GuardVerdict:
        mur, pi, rating = self.truth(x)
        flip = self.rng.random() < self.flip_prob
        if flip:
            if rating > 0 or mur or pi:
                mur, pi, rating = False, False, 0.0
            else:
                mur, pi, rating = False, True, 1.0
        v = _make_verdict(
            mur,
            pi,
            rating,
            self.verdict_rule,
            "oracle" + (" (flipped)" if flip else ""),
            x.unknown_tool,
        )
        return v


def _conversation(x: GuardInput) -> list[dict[str, str]]:
    """The candidate call as a conversation a content-moderation model can read."""
    msgs = [{"role": "user", "content": x.user_request}]
    for s in x.history:
        msgs.append({"role": "assistant", "content": f"Calling tool: {s.action.to_json()}"})
        msgs.append({"role": "user", "content": f"Tool result: {s.observation}"})
    msgs.append({"role": "assistant", "content": f"Calling tool: {x.candidate.to_json()}"})
    return msgs


def parse_llamaguard_output(text: str) -> GuardVerdict:
    """LlamaGuard-3/4: first non-empty line ``safe`` or ``unsafe`` (then categories, e.g. ``S2``)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    head = lines[0].lower() if lines else ""
    if head not in ("safe", "unsafe"):
        return GuardVerdict(
            "unsafe",
            1.0,
            False,
            False,
            raw=text,
            format_ok=False,
            error=f"expected 'safe'/'unsafe' on the first line, got {head!r}",
        )
    rating = 1.0 if head == "unsafe" else 0.0
    return GuardVerdict(
        RATING_LABELS[rating],
        rating,
        False,
        False,
        rationale=" ".join(lines[1:]),
        raw=text,
        score=rating,
    )


def parse_qwen3guard_output(text: str) -> GuardVerdict:
    """Qwen3Guard-Gen: ``Safety: Safe|Unsafe|Controversial`` (+ ``Categories:`` / ``Refusal:`` lines)."""
    m = re.search(r"Safety:\s*(Safe|Unsafe|Controversial)", text, re.IGNORECASE)
    if m is None:
        return GuardVerdict(
            "unsafe",
            1.0,
            False,
            False,
            raw=text,
            format_ok=False,
            error="no 'Safety: Safe|Unsafe|Controversial' line",
        )
    rating = {"safe": 0.0, "controversial": 0.5, "unsafe": 1.0}[m.group(1).lower()]
    cats = re.search(r"Categories:\s*(.+)", text)
    return GuardVerdict(
        RATING_LABELS[rating],
        rating,
        False,
        False,
        rationale=cats.group(1).strip() if cats else "",
        raw=text,
        score=rating,
    )


class _ModerationAdapter:
    parse: Callable[[str], GuardVerdict]

    def __init__(self, generate: Callable[[list[dict[str, str]]], str]) -> None:
        if not callable(generate):
            raise ConfigError(
                f"generate must be callable(messages) -> str, got {type(generate).__name__}"
            )
        self.generate = generate

    def judge(self, x: GuardInput) -> GuardVerdict:
        v = type(self).parse(self.generate(_conversation(x)))
        v.unknown_tool = x.unknown_tool
        return v


class LlamaGuardAdapter(_ModerationAdapter):
    """LlamaGuard over the candidate call rendered as a conversation; label from its safe/unsafe line."""

    parse = staticmethod(parse_llamaguard_output)


class Qwen3GuardAdapter(_ModerationAdapter):
    """Qwen3Guard-Gen over the candidate call rendered as a conversation; Safe/Controversial/Unsafe."""

    parse = staticmethod(parse_qwen3guard_output)
