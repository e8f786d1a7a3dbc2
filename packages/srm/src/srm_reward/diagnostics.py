"""Diagnostics (spec §2.4): per-dimension verdict rates over a set of cases, and leave-one-branch-out
attribution ``Δ_i = RM(render(all)) − RM(render(all with branch i → UNAVAILABLE))`` ([INFERRED]: the
counterfactual uses the ``UNAVAILABLE`` text the RM saw in branch-dropout training; ``mode="remove"``
drops the block instead)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from srm_reward.errors import SRMConfigError
from srm_reward.render import UNAVAILABLE

__all__ = ["branch_attribution", "diagnose", "parse_verdict"]

_VERDICT = re.compile(r"verdict\s*[:=]\s*(ok|issue)", re.IGNORECASE)
_ISSUE = re.compile(r"\b(issue|contradicted|wrong|mismatch|violat\w*|off-intent)\b", re.IGNORECASE)
_OK = re.compile(r"\b(ok|supported|correct|fits|matches)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str:
    """``"ok"``, ``"issue"``, ``"unavailable"`` or ``"unknown"`` from a branch text (an explicit
    ``verdict: ok|issue`` wins; otherwise issue / ok keywords, issue first)."""
    if text.strip() == UNAVAILABLE:
        return "unavailable"
    m = _VERDICT.search(text)
    if m:
        return m.group(1).lower()
    if _ISSUE.search(text):
        return "issue"
    if _OK.search(text):
        return "ok"
    return "unknown"


def diagnose(srm: Any, prompts: Sequence[Any], responses: Sequence[Any]) -> Any:
    """A ``pandas.DataFrame`` with one row per dimension: ``n``, ``issue_rate``, ``ok_rate``,
    ``unknown_rate``, ``unavailable_rate`` and ``mean_score`` of the cases flagged ``issue``."""
    import pandas as pd

    details = srm.score(list(prompts), list(responses), return_details=True)
    rows = []
    for name in srm.branch_names:
        verdicts = [d["verdicts"].get(name, "unavailable") for d in details]
        n = len(verdicts)
        flagged = [d["score"] for d, v in zip(details, verdicts, strict=True) if v == "issue"]
        rows.append(
            {
                "dimension": name,
                "n": n,
                **{
                    f"{k}_rate": (sum(v == k for v in verdicts) / n if n else float("nan"))
                    for k in ("issue", "ok", "unknown", "unavailable")
                },
                "mean_score_issue": (sum(flagged) / len(flagged)) if flagged else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def branch_attribution(
    srm: Any, prompt: Any, response: Any, *, mode: str = "unavailable"
) -> dict[str, float]:
    """Leave-one-branch-out ``Δ_i`` for one (prompt, response); branches run once, the RM ``1 + k`` times."""
    from srm_reward.model import as_text

    if mode not in ("unavailable", "remove"):
        raise SRMConfigError(f"mode must be 'unavailable' or 'remove', got {mode!r}")
    p, r = as_text(prompt), as_text(response)
    aux = srm.aux([p], [r])[0]
    texts = [srm.renderer(p, r, aux)]
    for name in srm.branch_names:
        a = dict(aux)
        if mode == "remove":
            a.pop(name, None)
        else:
            a[name] = UNAVAILABLE
        texts.append(srm.renderer(p, r, a))
    s = srm.score_texts(texts)
    return {name: float(s[0] - s[1 + k]) for k, name in enumerate(srm.branch_names)}
