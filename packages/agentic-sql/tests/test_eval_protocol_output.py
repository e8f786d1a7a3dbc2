"""Issue 21 §5: ``--output-dir`` writes BIRD's official prediction files, keeps string literals
byte for byte, and never overwrites a user's files (the conventions of ``test_no_overwrite.py``)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic_sql.cli import app
from agentic_sql.errors import UnsafeOutputDirError
from agentic_sql.eval import (
    BIRD_SEPARATOR,
    EVAL_OUTPUT_MARKER,
    evaluate_ex,
    one_line_sql,
    run_agent_eval,
    write_bird_outputs,
)
from agentic_sql.executor import SQLiteExecutor

runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A database whose values differ only in inner whitespace (collapsing it changes answers)."""
    r = tmp_path_factory.mktemp("dbs")
    (r / "ws").mkdir()
    con = sqlite3.connect(r / "ws" / "ws.sqlite")
    con.execute("CREATE TABLE t (id INTEGER, name TEXT)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(1, "a b"), (2, "a  b"), (3, "a\tb"), (4, "it's  ok"), (5, "x\ny")],
    )
    con.commit()
    con.close()
    return r


ROWS = [
    {"db_id": "ws", "gold_sql": "SELECT id FROM t WHERE name = 'a  b'", "difficulty": "simple"},
    {"db_id": "ws", "gold_sql": "SELECT id FROM t WHERE name = 'a\tb'", "difficulty": "simple"},
    {"db_id": "ws", "gold_sql": "SELECT id\nFROM t\nWHERE name = 'it''s  ok'", "difficulty": "moderate"},
    {"db_id": "ws", "gold_sql": "SELECT id FROM t -- the row\nWHERE name = 'x\ny'", "difficulty": "moderate"},
]  # fmt: skip


def _official_scores(out_dir: Path, db_root: Path) -> list[int]:
    """BIRD's evaluation.py: JSON predictions split at the separator, gold lines split at a tab,
    set(fetchall()) equality on the database."""
    preds = json.loads((out_dir / "predict_dev.json").read_text())
    scores = []
    for i, line in enumerate((out_dir / "dev_gold.sql").read_text().strip().split("\n")):
        gold_sql, db = line.split("\t")
        pred_sql, pred_db = preds[str(i)].split(BIRD_SEPARATOR)
        assert pred_db == db
        con = sqlite3.connect(db_root / db / f"{db}.sqlite")
        ok = set(con.execute(pred_sql).fetchall()) == set(con.execute(gold_sql).fetchall())
        con.close()
        scores.append(int(ok))
    return scores


def test_literals_keep_their_whitespace_in_bird_files(root, tmp_path):
    preds = [r["gold_sql"] for r in ROWS]
    with SQLiteExecutor(root, isolation="thread") as ex:
        m = evaluate_ex(preds, ROWS, ex, output_dir=tmp_path / "out")
    assert m["ex"] == 1.0
    assert _official_scores(tmp_path / "out", root) == [1, 1, 1, 1]  # collapsing gave 0 0 0 0
    raw = json.loads((tmp_path / "out" / "predict_dev.json").read_text())
    assert raw["0"] == f"SELECT id FROM t WHERE name = 'a  b'{BIRD_SEPARATOR}ws"
    assert raw["2"] == f"SELECT id FROM t WHERE name = 'it''s  ok'{BIRD_SEPARATOR}ws"
    assert raw["3"] == f"SELECT id FROM t /* the row */ WHERE name = 'x\ny'{BIRD_SEPARATOR}ws"


def test_one_line_sql_rules():
    assert one_line_sql("SELECT  a,\n\tb FROM t") == "SELECT a, b FROM t"
    assert (
        one_line_sql('SELECT "a  b", [c  d], `e  f` FROM t')
        == 'SELECT "a  b", [c  d], `e  f` FROM t'
    )
    assert one_line_sql("SELECT a -- note */\nFROM t") == "SELECT a /* note * / */ FROM t"
    assert one_line_sql("SELECT 'a\tb'", gold_file=True) == "SELECT ('a' || char(9) || 'b')"
    assert one_line_sql("SELECT 'a\tb'") == "SELECT 'a\tb'"


def test_output_dir_never_overwrites_a_users_files(root, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "predict_dev.json").write_text('{"0": "my own run"}')
    before = _snapshot(mine)
    preds = [r["gold_sql"] for r in ROWS]
    with SQLiteExecutor(root, isolation="thread") as ex:
        with pytest.raises(UnsafeOutputDirError, match="not empty"):
            evaluate_ex(preds, ROWS, ex, output_dir=mine)
        with pytest.raises(UnsafeOutputDirError, match="not empty"):
            run_agent_eval(lambda r: r["gold_sql"], None, ROWS, executor=ex, output_dir=mine)
    with pytest.raises(UnsafeOutputDirError, match="not empty"):
        write_bird_outputs(preds, ROWS, mine)
    with pytest.raises(UnsafeOutputDirError, match="is a file"):
        write_bird_outputs(preds, ROWS, mine / "predict_dev.json")
    assert _snapshot(mine) == before
    # a new folder, then the same (marked) folder again: both fine
    out = tmp_path / "out"
    for _ in range(2):
        write_bird_outputs(preds, ROWS, out)
        assert (out / EVAL_OUTPUT_MARKER).is_file()


def test_cli_output_dir_refused_before_the_model_is_loaded(root, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "dev.json").write_text("[]")
    split = tmp_path / "dev.json"
    split.write_text(json.dumps([{**r, "SQL": r["gold_sql"], "question": "q"} for r in ROWS]))
    before = _snapshot(mine)
    res = runner.invoke(
        app,
        ["eval", "-m", "org/never-loaded", "--db-root", str(root), "--data", str(split),
         "--output-dir", str(mine)],
    )  # fmt: skip
    assert res.exit_code != 0 and "refusing to write evaluation outputs" in res.output
    assert _snapshot(mine) == before
