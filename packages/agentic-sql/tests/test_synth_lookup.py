"""Issue 21 done-when: synthetic questions that need an exploration query first (the ablation's
multi-turn episodes), and the default suite unchanged."""

from __future__ import annotations

import sqlite3

import pytest

from agentic_sql.data import make_synthetic_task_suite
from agentic_sql.synth import LOOKUP_TEMPLATES, TEMPLATES, _fill, build_synthetic_suite


def _conns(suite):
    out = {}
    for db_id, db in suite.databases.items():
        con = sqlite3.connect(":memory:")
        _fill(con, db)
        out[db_id] = con
    return out


def test_lookup_questions_need_the_looked_up_value():
    suite = build_synthetic_suite(n_dbs=2, n_questions=120, seed=1, template_set="lookup")
    conns = _conns(suite)
    assert {q["template"] for q in suite.questions} == set(LOOKUP_TEMPLATES)
    n_two = 0
    for q in suite.questions:
        con = conns[q["db_id"]]
        values = []
        for e in q["explore_queries"]:
            rows = con.execute(e).fetchall()
            assert len(rows) == 1, e  # each lookup names exactly one row
            values.append(str(rows[0][0]))
        n_two += len(values) == 2
        for v in values:
            assert v in q["SQL"] and v not in q["question"]  # the value is not stated...
            assert v in q["direct_question"]  # ...except in the direct (one-turn) form
        assert con.execute(q["SQL"]).fetchall()  # a well-defined, non-empty answer
    assert n_two > 0


def test_mixed_set_and_validation():
    mixed = build_synthetic_suite(n_dbs=1, n_questions=90, template_set="mixed")
    names = {q["template"] for q in mixed.questions}
    assert names & set(LOOKUP_TEMPLATES) and names & set(TEMPLATES)
    assert all(
        ("explore_queries" in q) == (q["template"] in LOOKUP_TEMPLATES) for q in mixed.questions
    )
    with pytest.raises(ValueError, match="template_set must be one of"):
        build_synthetic_suite(template_set="hard")


def test_default_suite_has_no_lookup_fields(tmp_path):
    ds, _ = make_synthetic_task_suite(n_dbs=1, n_questions=12, out_dir=tmp_path / "s")
    assert "explore_queries" not in ds.column_names
    assert set(ds["template"]) <= set(TEMPLATES)
    lk, root = make_synthetic_task_suite(
        n_dbs=1, n_questions=12, out_dir=tmp_path / "l", template_set="lookup"
    )
    assert set(lk["template"]) <= set(LOOKUP_TEMPLATES) and (root / "dev.json").is_file()
