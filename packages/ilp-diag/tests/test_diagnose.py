import json
import logging

import pandas as pd
import pytest

from ilp_diag import DiagnosisConfig, diagnose, report, report_markdown
from ilp_diag.errors import ConfigError, SignalsError


def _row(idx, unlearned=True, **kw):
    base = dict(
        idx=idx,
        unlearned=unlearned,
        stage_id=1,
        nn_conflict=0.0,
        learned_at_stage_end=pd.NA,
        base_pass=True,
        base_conf=0.9,
        base_pref_margin=0.0,
        base_nll=0.1,
        loss_slope=0.0,
        rarity=0.0,
        complexity=0.0,
        task="t",
    )
    base.update(kw)
    return base


def _signals():
    rows = [
        _row(0, nn_conflict=1.0),  # C3
        _row(1, stage_id=0, learned_at_stage_end=True),  # C4
        _row(
            2, base_pass=False, base_conf=0.9, base_pref_margin=5.0, base_nll=6.0
        ),  # C2 (high nll too)
        _row(3, base_pass=False, base_conf=0.3, base_nll=6.0),  # C1
        _row(4, loss_slope=-0.01, rarity=5.0),  # C5 (rare, still decreasing)
        _row(
            5, nn_conflict=1.0, base_pass=False, base_conf=0.3, base_nll=6.0, loss_slope=-0.01
        ),  # C3 + C1 + C5(fallback? no: others fired)
        _row(6),  # unlearned, nothing fits -> unexplained
        _row(7, loss_slope=-0.01),  # C5 fallback: still decreasing, nothing else
        _row(8, unlearned=False, nn_conflict=1.0),  # learned: no cause
        _row(9, stage_id=0, learned_at_stage_end=False),  # never learned in its stage: not C4
    ] + [_row(10 + i, unlearned=False) for i in range(10)]
    df = pd.DataFrame(rows)
    df["learned_at_stage_end"] = df["learned_at_stage_end"].astype("boolean")
    return df


def test_rules_match_hand_built_rows():
    d = diagnose(_signals(), DiagnosisConfig(base_nll_q=0.75, rarity_q=0.9)).set_index("idx")
    assert d.loc[0, "primary_cause"] == "data_inconsistency"
    assert d.loc[1, "primary_cause"] == "left_side_forgetting"
    assert d.loc[2, "causes"] == ["knowledge_conflict"]
    assert d.loc[3, "causes"] == ["missing_knowledge"]
    assert d.loc[4, "causes"] == ["under_optimization"]
    assert d.loc[5, "causes"] == [
        "data_inconsistency",
        "missing_knowledge",
    ]  # multi-label, priority order
    assert d.loc[5, "primary_cause"] == "data_inconsistency"
    assert d.loc[6, "primary_cause"] == "unexplained" and d.loc[6, "causes"] == []
    assert d.loc[7, "causes"] == ["under_optimization"]
    assert pd.isna(d.loc[8, "primary_cause"]) and d.loc[8, "causes"] == []
    assert d.loc[9, "primary_cause"] == "unexplained"
    assert d.attrs["thresholds"]["base_nll"] == pytest.approx(
        pd.Series([6.0] * 3 + [0.1] * 17).quantile(0.75)
    )


def test_priority_is_configurable():
    d = diagnose(
        _signals(), DiagnosisConfig(priority=("C1", "C3", "C4", "C2", "C5"), base_nll_q=0.75)
    ).set_index("idx")
    assert d.loc[5, "primary_cause"] == "missing_knowledge"
    assert d.loc[5, "causes"] == ["missing_knowledge", "data_inconsistency"]
    # a rule left out of the priority never fires
    d2 = diagnose(_signals(), DiagnosisConfig(priority=("C3",))).set_index("idx")
    assert d2.loc[3, "primary_cause"] == "unexplained"


def test_quantile_threshold_moves_with_the_data():
    s = _signals()
    strict = diagnose(s, DiagnosisConfig(base_nll_q=1.0)).set_index("idx")
    assert strict.loc[3, "primary_cause"] == "missing_knowledge"  # 6.0 >= max
    s.loc[s.idx == 10, "base_nll"] = 9.0  # a learned row raises the max above row 3
    strict2 = diagnose(s, DiagnosisConfig(base_nll_q=1.0)).set_index("idx")
    assert strict2.loc[3, "primary_cause"] == "unexplained"


def test_missing_signals_disable_rules_with_warning(caplog):
    s = _signals().drop(columns=["loss_slope", "learned_at_stage_end"])
    with caplog.at_level(logging.WARNING):
        d = diagnose(s).set_index("idx")
    assert set(d.attrs["disabled_rules"]) == {"C4", "C5"}
    assert "C5" in caplog.text and "C4" in caplog.text
    assert d.loc[1, "primary_cause"] == "unexplained" and d.loc[4, "primary_cause"] == "unexplained"
    assert d.loc[0, "primary_cause"] == "data_inconsistency"


def test_report_schema_and_markdown():
    d = diagnose(_signals(), DiagnosisConfig(base_nll_q=0.75))
    rep = report(d)
    json.dumps(rep)  # serialisable
    assert rep["n"] == 20 and rep["n_unlearned"] == 9 and rep["ilp_rate"] == pytest.approx(0.45)
    assert sum(rep["primary_causes"].values()) == 9
    assert rep["primary_causes"]["unexplained"] == 2
    assert rep["multi_label"] == 1
    assert rep["per_task"]["t"]["n"] == 20
    assert set(rep["per_stage"]) == {"0", "1"}
    md = report_markdown(rep)
    assert "ILP rate 0.450" in md and "| data_inconsistency | 2 |" in md


def test_empty_unlearned_set_and_bad_inputs():
    s = _signals()
    s["unlearned"] = False
    rep = report(diagnose(s))
    assert rep["ilp_rate"] == 0 and rep["n_unlearned"] == 0
    with pytest.raises(SignalsError, match="unlearned"):
        diagnose(s.drop(columns=["unlearned"]))
    with pytest.raises(ConfigError, match="unknown rules"):
        diagnose(s, DiagnosisConfig(priority=("C9",)))
    with pytest.raises(ConfigError, match="quantile"):
        DiagnosisConfig(base_nll_q=1.5)
