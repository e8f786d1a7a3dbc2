"""Cause attribution (spec §2.3): ordered, configurable rules over the signals table.

Rules (all thresholds configurable; ``q`` = quantile over the whole training set, truncated rows excluded):

* C3 data_inconsistency  : nn_conflict ≥ τ_conf (0.5)
* C4 left_side_forgetting: stage_id < last_stage and learned_at_stage_end and unlearned now
* C2 knowledge_conflict  : base_pass == 0 and base_conf ≥ τ_base_conf (0.6) and base_pref_margin ≥ τ_margin (2 nats)
* C1 missing_knowledge   : base_pass == 0 and base_conf < τ_base_conf and base_nll ≥ q_{base_nll_q}(base_nll)

  ("≥ a quantile" also requires being above the column minimum, so ties at the bottom never count as high)
* C5 under_optimization  : loss_slope < −ε and (rarity ≥ q_{0.9} or complexity ≥ q_{0.9} or no other rule fired)

Every matching rule is kept as a label (multi-label); the primary cause is the first match in
``priority`` (default C3 > C4 > C2 > C1 > C5); an unlearned sample with no match is ``"unexplained"``.
A rule whose signal columns are absent (no loss log, no stage ids, no base model) is disabled with a
warning and listed in ``diag.attrs["disabled_rules"]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ilp_diag.errors import ConfigError, SignalsError

logger = logging.getLogger(__name__)

__all__ = [
    "CAUSES",
    "CAUSE_CODES",
    "Cause",
    "DiagnosisConfig",
    "Rule",
    "default_rules",
    "diagnose",
    "report",
    "report_markdown",
]

Cause = Literal[
    "missing_knowledge",
    "knowledge_conflict",
    "data_inconsistency",
    "left_side_forgetting",
    "under_optimization",
    "unexplained",
]
CAUSE_CODES: dict[str, str] = {
    "C1": "missing_knowledge",
    "C2": "knowledge_conflict",
    "C3": "data_inconsistency",
    "C4": "left_side_forgetting",
    "C5": "under_optimization",
}
CAUSES: tuple[str, ...] = (*CAUSE_CODES.values(), "unexplained")


@dataclass
class DiagnosisConfig:
    """Thresholds and rule order. Quantiles (``*_q``) are taken over all samples; others are absolute."""

    conflict_threshold: float = 0.5  # τ_conf
    base_conf_threshold: float = 0.6  # τ_base_conf
    margin_threshold: float = 2.0  # τ_margin (nats)
    base_nll_q: float = 0.9
    rarity_q: float = 0.9
    complexity_q: float = 0.9
    slope_eps: float = 1e-4  # loss still decreasing: slope < −ε (nats per step)
    priority: tuple[str, ...] = ("C3", "C4", "C2", "C1", "C5")

    def __post_init__(self) -> None:
        for name in ("base_nll_q", "rarity_q", "complexity_q"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be a quantile in [0, 1], got {v}")
        for name in ("conflict_threshold", "base_conf_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        self.priority = tuple(self.priority)
        if len(set(self.priority)) != len(self.priority):
            raise ConfigError(f"priority has duplicates: {self.priority}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["priority"] = list(self.priority)
        return d


RuleFn = Callable[[pd.DataFrame, Mapping[str, float], DiagnosisConfig], pd.Series]


@dataclass(frozen=True)
class Rule:
    """One attribution rule: ``fn(signals, thresholds, config) -> bool Series`` over all rows; ``needs``
    lists the signal columns it reads (missing → rule disabled with a warning)."""

    code: str
    cause: str
    needs: tuple[str, ...]
    fn: RuleFn = field(repr=False)
    needs_fallback: bool = False  # C5: may fire when no other rule fired


def _high(s: pd.DataFrame, col: str, t: Mapping[str, float]) -> pd.Series:
    """``col ≥ its quantile threshold`` and above the column minimum (ties at the bottom never count as high)."""
    return (s[col] >= t[col]) & (s[col] > s[col].min())


def _c3(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    return s["nn_conflict"].fillna(0) >= c.conflict_threshold


def _c4(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    return (s["stage_id"] < s["last_stage"]) & s["learned_at_stage_end"].fillna(False).astype(bool)


def _base_fail(s: pd.DataFrame) -> pd.Series:
    return ~s["base_pass"].fillna(False).astype(bool)


def _c2(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    return (
        _base_fail(s)
        & (s["base_conf"] >= c.base_conf_threshold)
        & (s["base_pref_margin"] >= c.margin_threshold)
    )


def _c1(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    return _base_fail(s) & (s["base_conf"] < c.base_conf_threshold) & _high(s, "base_nll", t)


def _c5_hard(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    hard = pd.Series(False, index=s.index)
    if "rarity" in s:
        hard |= _high(s, "rarity", t)
    if "complexity" in s:
        hard |= _high(s, "complexity", t)
    return hard


def _c5(s: pd.DataFrame, t: Mapping[str, float], c: DiagnosisConfig) -> pd.Series:
    return (s["loss_slope"] < -c.slope_eps) & _c5_hard(s, t, c)


def default_rules() -> list[Rule]:
    """The five rules of spec §2.3 (see module doc)."""
    return [
        Rule("C3", "data_inconsistency", ("nn_conflict",), _c3),
        Rule("C4", "left_side_forgetting", ("stage_id", "last_stage", "learned_at_stage_end"), _c4),
        Rule("C2", "knowledge_conflict", ("base_pass", "base_conf", "base_pref_margin"), _c2),
        Rule("C1", "missing_knowledge", ("base_pass", "base_conf", "base_nll"), _c1),
        Rule("C5", "under_optimization", ("loss_slope",), _c5, needs_fallback=True),
    ]


def _thresholds(s: pd.DataFrame, c: DiagnosisConfig) -> dict[str, float]:
    ok = (
        ~s["truncated"].fillna(False).astype(bool)
        if "truncated" in s
        else pd.Series(True, index=s.index)
    )
    out: dict[str, float] = {}
    for col, q in (
        ("base_nll", c.base_nll_q),
        ("rarity", c.rarity_q),
        ("complexity", c.complexity_q),
    ):
        if col in s and s.loc[ok, col].notna().any():
            out[col] = float(np.nanquantile(s.loc[ok, col].to_numpy(float), q))
        else:
            out[col] = float("inf")
    return out


def diagnose(
    signals: pd.DataFrame,
    config: DiagnosisConfig | None = None,
    rules: Sequence[Rule] | None = None,
) -> pd.DataFrame:
    """Attribute each unlearned sample to causes.

    Adds columns ``causes`` (list of cause names, priority order), ``primary_cause`` (the first; ``"unexplained"``
    for an unlearned sample with none; missing (NA) for learned samples) and one boolean column per rule code.
    ``attrs``: ``thresholds``, ``disabled_rules``, ``config``.
    """
    config = config or DiagnosisConfig()
    rules = list(rules) if rules is not None else default_rules()
    for col in ("idx", "unlearned"):
        if col not in signals.columns:
            raise SignalsError(f"signals table lacks column {col!r}; got {list(signals.columns)}")
    by_code = {r.code: r for r in rules}
    unknown = [p for p in config.priority if p not in by_code]
    if unknown:
        raise ConfigError(f"priority names unknown rules {unknown}; known: {sorted(by_code)}")
    s = signals.copy()
    if "stage_id" in s and "last_stage" not in s:
        s["last_stage"] = int(s["stage_id"].max())
    th = _thresholds(s, config)
    unl = s["unlearned"].astype(bool)
    disabled: dict[str, list[str]] = {}
    fired: dict[str, pd.Series] = {}
    fallback: list[str] = []
    for code in config.priority:
        rule = by_code[code]
        missing = [c for c in rule.needs if c not in s.columns or s[c].isna().all()]
        if missing:
            disabled[code] = missing
            logger.warning("rule %s (%s) disabled: missing signal(s) %s", code, rule.cause, missing)
            fired[code] = pd.Series(False, index=s.index)
            continue
        fired[code] = rule.fn(s, th, config).fillna(False).astype(bool) & unl
        if rule.needs_fallback:
            fallback.append(code)
    # fallback rules (C5): also fire on still-decreasing loss when no other rule matched
    others = [c for c in config.priority if c not in fallback]
    none_other = (
        ~pd.concat([fired[c] for c in others], axis=1).any(axis=1)
        if others
        else pd.Series(True, index=s.index)
    )
    for code in fallback:
        slope_ok = s["loss_slope"] < -config.slope_eps
        fired[code] = fired[code] | (slope_ok.fillna(False) & none_other & unl)
    causes, primary = [], []
    for i in s.index:
        labels = [by_code[c].cause for c in config.priority if fired[c].loc[i]]
        causes.append(labels)
        primary.append((labels[0] if labels else "unexplained") if unl.loc[i] else None)
    for code in config.priority:
        s[code] = fired[code]
    s["causes"] = causes
    s["primary_cause"] = primary
    s.attrs = {
        **signals.attrs,
        "thresholds": th,
        "disabled_rules": disabled,
        "config": config.to_dict(),
    }
    return s


def report(diag: pd.DataFrame) -> dict[str, Any]:
    """Summary dict (JSON-serialisable): ILP rate, cause histograms, per-task and per-stage breakdowns."""
    for col in ("unlearned", "primary_cause", "causes"):
        if col not in diag.columns:
            raise SignalsError(f"diagnosis table lacks column {col!r}; run diagnose() first")
    unl = diag["unlearned"].astype(bool)
    n, k = len(diag), int(unl.sum())
    primary = {c: int((diag.loc[unl, "primary_cause"] == c).sum()) for c in CAUSES}
    labels = {c: int(sum(c in ls for ls in diag.loc[unl, "causes"])) for c in CAUSE_CODES.values()}

    def breakdown(col: str) -> dict[str, Any]:
        if col not in diag or diag[col].isna().all():
            return {}
        out = {}
        for key, g in diag.groupby(diag[col].astype(str)):
            gu = g["unlearned"].astype(bool)
            out[str(key)] = {
                "n": len(g),
                "unlearned": int(gu.sum()),
                "ilp_rate": float(gu.mean()),
                "primary": {
                    c: int((g.loc[gu, "primary_cause"] == c).sum())
                    for c in CAUSES
                    if (g.loc[gu, "primary_cause"] == c).any()
                },
            }
        return out

    return {
        "n": n,
        "n_unlearned": k,
        "ilp_rate": k / n if n else 0.0,
        "primary_causes": primary,
        "cause_labels": labels,
        "multi_label": int(sum(len(ls) > 1 for ls in diag.loc[unl, "causes"])),
        "per_task": breakdown("task"),
        "per_stage": breakdown("stage_id"),
        "thresholds": _jsonable(diag.attrs.get("thresholds", {})),
        "disabled_rules": diag.attrs.get("disabled_rules", {}),
        "config": diag.attrs.get("config", {}),
        "generation": diag.attrs.get("generation", {}),
        "unlearned_idx": [int(i) for i in diag.loc[unl, "idx"]],
    }


def _jsonable(d: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (None if not np.isfinite(v) else float(v)) for k, v in d.items()}


def report_markdown(rep: Mapping[str, Any]) -> str:
    """A markdown rendering of :func:`report`'s dict."""
    lines = [
        "# ILP diagnosis report",
        "",
        f"- samples: {rep['n']}",
        f"- unlearned: {rep['n_unlearned']} (ILP rate {rep['ilp_rate']:.3f})",
        f"- multi-label samples: {rep['multi_label']}",
    ]
    if rep.get("disabled_rules"):
        lines.append(f"- disabled rules: {json.dumps(rep['disabled_rules'])}")
    lines += ["", "| cause | primary | labels |", "|---|---:|---:|"]
    for c in CAUSES:
        lines.append(
            f"| {c} | {rep['primary_causes'].get(c, 0)} | {rep['cause_labels'].get(c, '')} |"
        )
    for name in ("per_task", "per_stage"):
        if rep.get(name):
            lines += [
                "",
                f"## {name.replace('_', ' ')}",
                "",
                "| group | n | unlearned | ILP rate |",
                "|---|---:|---:|---:|",
            ]
            for g, v in rep[name].items():
                lines.append(f"| {g} | {v['n']} | {v['unlearned']} | {v['ilp_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def explain_rules(rules: Iterable[Rule] | None = None) -> list[str]:
    """One line per rule: code, cause, needed signals."""
    return [f"{r.code} {r.cause}: needs {', '.join(r.needs)}" for r in (rules or default_rules())]
