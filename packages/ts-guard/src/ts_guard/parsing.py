"""Parse TS-Guard output and turn its three heads into a verdict (spec §2.1; issue 16).

Output format (after optional free-form reasoning / ``<Think>``)::

    <Malicious_User_Request>yes|no<\\Malicious_User_Request>
    <Being_Attacked>yes|no<\\Being_Attacked>
    <Harmfulness_Rating>0.0|0.5|1.0<\\Harmfulness_Rating>

Two parsing modes:

* ``official=True`` reproduces the released reward regexes: matching on the lower-cased text, closing
  tags with one or two backslashes only (``<\\Tag>``; ``</Tag>`` does *not* close), values exactly
  ``yes|no`` and the rating literal ``0.0|0.5|1.0`` with surrounding whitespace; for each tag the first
  occurrence that matches wins.
* ``official=False`` (lenient, the default): tags case-insensitive, closing ``</Tag>`` or ``<\\Tag>``;
  the *first* occurrence of each tag wins (a later well-formed duplicate does not rescue a bad first
  one); a rating is any number equal to 0, 0.5 or 1 (``1``, ``0.50``).

Verdict rules: ``"official"`` — score = 0.4·[attacked] + 0.4·[malicious] + 0.1·[r = 0.5] + 0.2·[r = 1.0],
unsafe if score > 0.5, controversial if score = 0.5, else safe (the released evaluation parser);
``"rating"`` — 0.0 safe, 0.5 controversial, 1.0 unsafe.
"""

from __future__ import annotations

import re
from typing import Literal

from ts_guard.errors import ConfigError, GuardParseError
from ts_guard.types import GuardVerdict, Label

__all__ = [
    "TAGS",
    "parse_guard_output",
    "parse_heads",
    "official_score",
    "verdict_label",
    "RATING_LABELS",
]

TAGS = ("Malicious_User_Request", "Being_Attacked", "Harmfulness_Rating")
RATING_LABELS: dict[float, Label] = {0.0: "safe", 0.5: "controversial", 1.0: "unsafe"}
VerdictRule = Literal["official", "rating"]
LabelSpace = Literal["ternary", "binary"]

_YES_NO = {"yes": True, "no": False}
# official (released) patterns: lower-cased text, backslash closing only, literal values
_OFFICIAL = {
    "malicious_user_request": re.compile(
        r"<malicious_user_request>\s*(yes|no)\s*<\\{1,2}malicious_user_request>"
    ),
    "being_attacked": re.compile(r"<being_attacked>\s*(yes|no)\s*<\\{1,2}being_attacked>"),
    "harmfulness_rating": re.compile(
        r"<harmfulness_rating>\s*(0\.0|0\.5|1\.0)\s*<\\{1,2}harmfulness_rating>"
    ),
}
_OFFICIAL_JUDGMENT = re.compile(r"<judgment>\s*(safe|unsafe)\s*<\\{1,2}judgment>")
_THINK = re.compile(r"<think>(.*?)(?:</think>|<\\+think>)", re.IGNORECASE | re.DOTALL)


def _lenient_tag(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<{tag}>(.*?)(?:</{tag}>|<\\+{tag}>)", re.IGNORECASE | re.DOTALL)


_LENIENT = {t.lower(): _lenient_tag(t) for t in (*TAGS, "Judgment")}


def official_score(malicious_request: bool, being_attacked: bool, harmfulness: float) -> float:
    """The released aggregation 0.4·PI + 0.4·MUR + 0.1·[r = 0.5] + 0.2·[r = 1.0] (in that order)."""
    score = 0.0
    if being_attacked:
        score += 0.4
    if malicious_request:
        score += 0.4
    if harmfulness == 0.5:
        score += 0.1
    if harmfulness == 1.0:
        score += 0.2
    return score


def verdict_label(
    malicious_request: bool,
    being_attacked: bool,
    harmfulness: float,
    rule: VerdictRule = "official",
) -> Label:
    """The verdict of three heads under ``rule`` (module docstring)."""
    if rule == "rating":
        return RATING_LABELS[harmfulness]
    if rule != "official":
        raise ConfigError(f"verdict rule must be 'official' or 'rating', got {rule!r}")
    score = round(official_score(malicious_request, being_attacked, harmfulness), 9)
    if score > 0.5:
        return "unsafe"
    if score == 0.5:
        return "controversial"
    return "safe"


def parse_heads(text: str, *, official: bool = False) -> dict[str, object]:
    """The three heads ``{"malicious_request": bool, "being_attacked": bool, "harmfulness": float}``.

    Raises :class:`GuardParseError` naming the missing or malformed tag.
    """
    if not isinstance(text, str):
        raise GuardParseError(f"guard output must be a string, got {type(text).__name__}")
    out: dict[str, object] = {}
    if official:
        low = text.lower()
        for key, pat in _OFFICIAL.items():
            m = pat.search(low)
            if m is None:
                raise GuardParseError(
                    f"no well-formed <{key}>…<\\{key}> with {'0.0|0.5|1.0' if 'rating' in key else 'yes|no'} "
                    f"(official mode: backslash closing only) in {text[-200:]!r}",
                    raw=text,
                )
            out[key] = m.group(1)
    else:
        for key in ("malicious_user_request", "being_attacked", "harmfulness_rating"):
            m = _LENIENT[key].search(text)
            if m is None:
                raise GuardParseError(f"missing tag <{key}>…</{key}> in {text[-200:]!r}", raw=text)
            out[key] = m.group(1).strip().lower()
    mur, pi, rating = (
        out["malicious_user_request"],
        out["being_attacked"],
        out["harmfulness_rating"],
    )
    for name, val in (("Malicious_User_Request", mur), ("Being_Attacked", pi)):
        if val not in _YES_NO:
            raise GuardParseError(f"<{name}> must be yes|no, got {val!r}", raw=text)
    try:
        r = float(str(rating))
    except ValueError:
        raise GuardParseError(
            f"<Harmfulness_Rating> must be 0.0|0.5|1.0, got {rating!r}", raw=text
        ) from None
    if r not in RATING_LABELS:
        raise GuardParseError(f"<Harmfulness_Rating> must be 0.0|0.5|1.0, got {rating!r}", raw=text)
    return {
        "malicious_request": _YES_NO[str(mur)],
        "being_attacked": _YES_NO[str(pi)],
        "harmfulness": r,
    }


def _rationale(text: str) -> str:
    m = _THINK.search(text)
    if m:
        return m.group(1).strip()
    first = re.search(
        r"<(malicious_user_request|being_attacked|harmfulness_rating|judgment)>",
        text,
        re.IGNORECASE,
    )
    return (text[: first.start()] if first else text).strip()


def parse_guard_output(
    text: str,
    *,
    official: bool = False,
    label_space: LabelSpace = "ternary",
    verdict_rule: VerdictRule = "official",
    strict: bool = False,
) -> GuardVerdict:
    """Parse one guard output into a :class:`GuardVerdict`.

    ``official`` picks the released regexes (module docstring); ``label_space="binary"`` reads
    ``<Judgment>safe|unsafe</Judgment>`` instead of the three heads. On unparsable output, ``strict=True``
    raises :class:`GuardParseError`; otherwise a fail-closed verdict (``label="unsafe"``,
    ``format_ok=False``, ``error`` set) is returned — TS-Flow then applies its ``on_parse_error`` policy.
    """
    if label_space not in ("ternary", "binary"):
        raise ConfigError(f"label_space must be 'ternary' or 'binary', got {label_space!r}")
    if verdict_rule not in ("official", "rating"):
        raise ConfigError(f"verdict rule must be 'official' or 'rating', got {verdict_rule!r}")
    try:
        if label_space == "binary":
            if official:
                m = _OFFICIAL_JUDGMENT.search(text.lower())
                val = m.group(1) if m else None
            else:
                m = _LENIENT["judgment"].search(text)
                val = m.group(1).strip().lower() if m else None
            if val not in ("safe", "unsafe"):
                raise GuardParseError(f"<Judgment> must be safe|unsafe, got {val!r}", raw=text)
            unsafe = val == "unsafe"
            return GuardVerdict(
                label="unsafe" if unsafe else "safe",
                harmfulness=1.0 if unsafe else 0.0,
                malicious_request=False,
                being_attacked=False,
                rationale=_rationale(text),
                raw=text,
                score=1.0 if unsafe else 0.0,
            )
        heads = parse_heads(text, official=official)
    except GuardParseError as e:
        if strict:
            raise
        return GuardVerdict(
            label="unsafe",
            harmfulness=1.0,
            malicious_request=False,
            being_attacked=False,
            rationale="",
            raw=text if isinstance(text, str) else repr(text),
            format_ok=False,
            error=str(e),
        )
    mur, pi, r = (
        bool(heads["malicious_request"]),
        bool(heads["being_attacked"]),
        float(heads["harmfulness"]),
    )  # type: ignore[arg-type]
    return GuardVerdict(
        label=verdict_label(mur, pi, r, verdict_rule),
        harmfulness=r,
        malicious_request=mur,
        being_attacked=pi,
        rationale=_rationale(text),
        raw=text,
        score=official_score(mur, pi, r),
    )
