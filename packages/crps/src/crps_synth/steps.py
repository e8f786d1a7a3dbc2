"""Step segmentation and formatting.

Two parsers, as in the released code (github.com/PeiYangLiu/CRPS, ``crps/utils/segmentation.py`` and
``crps/synthesis/synthesizer.py``):

* :func:`segment_steps` — explorer output (rollouts, expansions): the released hierarchical protocol.
  Math spans (``$…$``, ``\\(…\\)``, ``\\[…\\]``) are protected; split on newlines; segments longer than
  ``max_step_words`` are split at logic connectors ("Therefore, ", "Thus, ", …), then at enumerations
  ("Step 2: ", "2. ", "First, ", …), then hard-split at word boundaries.
* :func:`parse_steps` — synthesizer output in "Step N: …" form: split at ``Step\\s+\\d+\\s*[:.]``
  markers (``**Step 1:**`` tolerated); text without markers is one step.

Steps are stored *without* their "Step N:" marker; :func:`format_steps` writes them back.
"""

from __future__ import annotations

import re

_MATH = (
    re.compile(r"\\\[.*?\\\]", re.DOTALL),
    re.compile(r"\\\(.*?\\\)", re.DOTALL),
    re.compile(r"\$[^$]+\$"),
)
_LOGIC = re.compile(r"(?:(?:^|\n)\s*|(?<=\. ))(?:Therefore|Thus|Hence|So|Consequently),\s")
_ENUM = re.compile(
    r"(?:(?:^|\n)\s*|(?<=\. ))(?:Step\s+\d+[:.]\s|\d+[.)]\s|(?:First|Second|Third|Next|Finally),\s)"
)
_MARKER = re.compile(r"(?:\*\*)?\s*Step\s+\d+\s*[:.]\s*(?:\*\*)?", re.IGNORECASE)
_LEADING_MARKER = re.compile(r"^\s*(?:\*\*)?\s*Step\s+\d+\s*[:.]\s*(?:\*\*)?\s*", re.IGNORECASE)


def _mask(text: str) -> tuple[str, list[tuple[str, str]]]:
    repl: list[tuple[str, str]] = []

    def sub(m: re.Match[str]) -> str:
        key = f"\x00M{len(repl)}\x00"
        repl.append((key, m.group(0)))
        return key

    for pat in _MATH:
        text = pat.sub(sub, text)
    return text, repl


def _unmask(text: str, repl: list[tuple[str, str]]) -> str:
    for key, original in reversed(repl):
        text = text.replace(key, original)
    return text


def _split_at(pattern: re.Pattern[str], text: str) -> list[str]:
    cuts = [m.start() for m in pattern.finditer(text) if m.start() > 0]
    if not cuts:
        return [text]
    parts, prev = [], 0
    for c in cuts:
        parts.append(text[prev:c])
        prev = c
    parts.append(text[prev:])
    return [p for p in parts if p.strip()]


def _hard_split(text: str, max_words: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def strip_marker(step: str) -> str:
    """``"**Step 3:** x = 2"`` → ``"x = 2"`` (a leading step marker removed, whitespace stripped)."""
    return _LEADING_MARKER.sub("", step, count=1).strip()


def segment_steps(text: str, max_step_words: int = 256) -> list[str]:
    """Explorer text → steps, by the released segmentation protocol (see the module doc).

    Returns the steps with leading "Step N:" markers removed; empty text gives ``[]``.
    """
    if max_step_words < 1:
        raise ValueError(f"max_step_words must be >= 1, got {max_step_words}")
    if not text or not text.strip():
        return []
    masked, repl = _mask(text)
    segments = [s for s in masked.split("\n") if s.strip()]
    for pattern in (_LOGIC, _ENUM):
        segments = [
            part
            for seg in segments
            for part in (_split_at(pattern, seg) if len(seg.split()) > max_step_words else [seg])
        ]
    out: list[str] = []
    for seg in segments:
        pieces = _hard_split(seg, max_step_words) if len(seg.split()) > max_step_words else [seg]
        for p in pieces:
            step = strip_marker(_unmask(p, repl))
            if step:
                out.append(step)
    return out


def parse_steps(text: str) -> list[str]:
    """Synthesizer text in "Step N: …" form → steps (markers removed; no markers → one step).

    ``"**Step 1:** a\\n**Step 2.** b"`` → ``["a", "b"]``. Text before the first marker is dropped
    when markers exist (a preamble such as "Here is the solution:"). Empty text gives ``[]``.
    """
    if not text or not text.strip():
        return []
    marks = list(_MARKER.finditer(text))
    if not marks:
        return [text.strip()]
    steps = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end() : end].strip()
        if body:
            steps.append(body)
    return steps


def format_steps(steps: list[str]) -> str:
    """Steps → ``"Step 1: …\\nStep 2: …"`` (the SFT completion text)."""
    return "\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps))


def normalize_step(step: str) -> str:
    """A step compared for equality: marker removed, whitespace collapsed, lower-cased, trailing dot dropped."""
    s = " ".join(strip_marker(step).split()).lower()
    return s.rstrip(". ")


def divergence_index(a: list[str], b: list[str]) -> int:
    """Index of the first step where ``a`` and ``b`` differ (= length of their common normalized prefix).

    Equal lists give ``min(len(a), len(b))``.
    """
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize_step(x) != normalize_step(y):
            break
        n += 1
    return n
