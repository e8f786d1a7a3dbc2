"""Answer extractors and answer equivalence.

An extractor maps one generation to its *normalised final decision string* or ``None`` when no
answer can be read (``None`` answers never merge with each other in the consensus count).

* :func:`choice_ab` -- a pairwise verdict ``"A"`` / ``"B"``.
* :func:`yes_no` -- a pointwise verdict ``"yes"`` / ``"no"``.
* :func:`boxed_math` -- the content of the last ``\\boxed{...}``, else :func:`final_answer`.
* :func:`numeric` -- the last number in the text, normalised (``"07" -> "7"``, ``"2.50" -> "2.5"``).
* :func:`final_answer` -- the text after the last ``answer`` / ``Answer:`` marker (first token),
  else the last number.
* :func:`regex` -- build an extractor from a pattern (group 1 of the last match).

Equivalence: :func:`answers_equivalent` compares two extracted answers exactly, or with
``math-verify`` (``mode="math"``; extra ``egrm-reward[math]``, imported lazily because importing it
costs ~10 s; its signal-based timeouts are switched off outside the main thread, where they raise).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any

from egrm_reward.errors import EGRMValueError

Extractor = Callable[[str], str | None]

_AB = re.compile(
    r"(?:\[\[\s*([AB])\s*\]\]"
    r"|\b(?:answer|verdict|choice|better|prefer(?:red)?)\b(?:\W*(?:response|output|assistant|is)\b)*\W{0,3}\(?([AB])\b\)?"
    r"|^\W*\(?(?-i:([AB]))\b\)?)",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")
_ANSWER = re.compile(r"\banswer\b\s*(?:is)?\s*[:=]?\s*([^\s,;]+)", re.IGNORECASE)


def choice_ab(text: str) -> str | None:
    """``"A"`` / ``"B"``: ``[[A]]``, ``Answer: B``, ``The better response is A``, or a text that starts with A/B.

    The last explicit marker wins (a judge that reasons first states its verdict last); ``None`` when
    there is no marker.
    """
    found = None
    for m in _AB.finditer(text):
        g = next(x for x in m.groups() if x)
        found = g.upper()
    return found


def yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` (the last such word), else ``None``."""
    words = re.findall(r"\b(yes|no|correct|incorrect|true|false)\b", text.lower())
    if not words:
        return None
    return "yes" if words[-1] in ("yes", "correct", "true") else "no"


def normalise_number(token: str) -> str | None:
    """``"07" -> "7"``, ``"2.50" -> "2.5"``, ``"1,000" -> "1000"``, ``"-0" -> "0"``; ``None`` if not a number."""
    s = token.strip().rstrip(".").replace(",", "")
    if "/" in s:
        num, _, den = s.partition("/")
        try:
            from fractions import Fraction

            f = Fraction(int(num), int(den))
        except (ValueError, ZeroDivisionError):
            return None
        return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    try:
        v = float(s)
    except ValueError:
        return None
    if v != v or v in (float("inf"), float("-inf")):
        return None
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def numeric(text: str) -> str | None:
    """The last number in ``text``, normalised by :func:`normalise_number`."""
    nums = _NUMBER.findall(text)
    for tok in reversed(nums):
        n = normalise_number(tok)
        if n is not None:
            return n
    return None


def _last_boxed(text: str) -> str | None:
    i = text.rfind("\\boxed")
    if i < 0:
        return None
    j = text.find("{", i)
    if j < 0:
        return None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k].strip()
    return None


def final_answer(text: str) -> str | None:
    """The first token after the last ``answer`` marker (number-normalised when numeric), else the last number."""
    ms = _ANSWER.findall(text)
    if ms:
        tok = ms[-1].strip().rstrip(".")
        if not tok:
            return None
        return normalise_number(tok) or tok.lower()
    return numeric(text)


def boxed_math(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (whitespace-collapsed, number-normalised), else :func:`final_answer`."""
    box = _last_boxed(text)
    if box is None:
        return final_answer(text)
    if not box:
        return None
    box = " ".join(box.split())
    return normalise_number(box) or box


def regex(pattern: str, flags: int = re.IGNORECASE) -> Extractor:
    """An extractor returning group 1 (else the whole match) of the last match of ``pattern``, stripped."""
    rx = re.compile(pattern, flags)

    def extract(text: str) -> str | None:
        ms = list(rx.finditer(text))
        if not ms:
            return None
        m = ms[-1]
        val = (m.group(1) if rx.groups else m.group(0)).strip()
        return val or None

    extract.__name__ = f"regex({pattern!r})"
    return extract


EXTRACTORS: dict[str, Extractor] = {
    "choice_ab": choice_ab,
    "yes_no": yes_no,
    "boxed_math": boxed_math,
    "numeric": numeric,
    "final_answer": final_answer,
}


def get_extractor(name: str | Extractor) -> Extractor:
    """An extractor by name (``choice_ab``, ``yes_no``, ``boxed_math``, ``numeric``, ``final_answer``,
    ``regex:<pattern>``) or the callable itself."""
    if callable(name):
        return name
    if name.startswith("regex:"):
        return regex(name[len("regex:") :])
    if name not in EXTRACTORS:
        raise EGRMValueError(
            f"unknown answer extractor {name!r}; expected one of {sorted(EXTRACTORS)} or 'regex:<pattern>'"
        )
    return EXTRACTORS[name]


@functools.lru_cache(maxsize=1)
def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as e:
        raise ImportError(
            "answer equivalence mode 'math' needs math-verify: pip install 'egrm-reward[math]'"
        ) from e
    return math_verify


def _timeouts() -> dict[str, Any]:
    """math-verify's timeouts use signals, which only work in the main thread: off elsewhere."""
    if threading.current_thread() is threading.main_thread():
        return {}
    return {"parsing_timeout": None}


@functools.lru_cache(maxsize=4096)
def _mv_parse(text: str) -> tuple[Any, ...]:
    mv = _math_verify()
    wrapped = text if "\\boxed" in text or "$" in text else f"${text}$"
    return tuple(mv.parse(wrapped, **_timeouts()))


def answers_equivalent(a: str, b: str, mode: str = "exact") -> bool:
    """Whether two extracted (non-``None``) answers are the same answer.

    ``mode="exact"``: equal after whitespace collapse and case folding. ``mode="math"``: exact, or
    math-verify's ``verify(parse(a), parse(b))`` (e.g. ``"1/2"`` vs ``"0.5"``).
    """
    if mode not in ("exact", "math"):
        raise EGRMValueError(f"equivalence mode must be 'exact' or 'math', got {mode!r}")
    na, nb = " ".join(a.split()).casefold(), " ".join(b.split()).casefold()
    if na == nb:
        return True
    if mode == "exact":
        return False
    pa, pb = _mv_parse(a), _mv_parse(b)
    if not pa or not pb:
        return False
    mv = _math_verify()
    kw = {} if threading.current_thread() is threading.main_thread() else {"timeout_seconds": None}
    return bool(mv.verify(list(pa), list(pb), **kw))
