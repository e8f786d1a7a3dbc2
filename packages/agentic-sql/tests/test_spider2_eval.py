"""Spider 2.0-lite (local SQLite) scored against the official gold result CSVs (``metric="spider2"``).

Cases follow xlang-ai/Spider2 ``evaluation_suite/evaluate.py``: each checked gold column
(``condition_cols``) must equal some predicted column, per-instance ``ignore_order``, numbers within
``abs_tol=0.01``, NaN equal to NaN, ``<id>_a.csv`` / ``<id>_b.csv`` alternatives, values read back
through a CSV round trip.
"""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from agentic_sql.errors import MalformedDatasetError
from agentic_sql.eval import evaluate_ex
from agentic_sql.executor import ExecResult, SQLiteExecutor
from agentic_sql.spider2 import (
    evaluate_spider2_sqlite,
    load_spider2_gold,
    read_spider2_predictions,
    result_to_frame,
    spider2_match,
    spider2_table_match,
)


def df(cols, rows):
    return pd.DataFrame.from_records(rows, columns=cols)


# ----------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------


def test_checked_gold_columns_must_each_equal_some_predicted_column():
    gold = df(["city", "n", "note"], [("paris", 3, "x"), ("rome", 1, "y")])
    # names, column order and extra predicted columns do not matter
    pred = df(["cnt", "extra", "town"], [(3, 0, "paris"), (1, 0, "rome")])
    assert not spider2_table_match(pred, gold)  # all columns checked: "note" is missing
    assert spider2_table_match(pred, gold, condition_cols=[0, 1])
    # row order matters unless ignore_order
    swapped = df(["town", "cnt"], [("rome", 1), ("paris", 3)])
    assert not spider2_table_match(swapped, gold, [0, 1])
    assert spider2_table_match(swapped, gold, [0, 1], ignore_order=True)
    # ignore_order sorts each column on its own (the official behaviour): misaligned rows pass
    misaligned = df(["town", "cnt"], [("paris", 1), ("rome", 3)])
    assert spider2_table_match(misaligned, gold, [0, 1], ignore_order=True)
    assert not spider2_table_match(misaligned, gold, [0, 1], ignore_order=False)


def test_numeric_tolerance_and_missing_values():
    gold = df(["v"], [(3.14159,), (None,)])
    assert spider2_table_match(df(["x"], [(3.14,), (None,)]), gold)  # |diff| <= 0.01
    assert not spider2_table_match(df(["x"], [(3.13,), (None,)]), gold)  # 0.0116 > 0.01
    assert not spider2_table_match(df(["x"], [(3.14159,), (0.0,)]), gold)  # NaN only equals NaN
    assert not spider2_table_match(df(["x"], [(3.14159,)]), gold)  # lengths differ


def test_alternative_gold_answers_and_per_variant_condition_columns():
    a = df(["x", "y"], [(1, 2)])
    b = df(["x", "y"], [(1, 5)])
    pred = df(["p"], [(5,)])
    assert not spider2_match(pred, [a, b], [])
    assert spider2_match(pred, [a, b], [[0], [1]])  # one list per variant: b's column y
    assert not spider2_match(pred, [a, b], [0])  # one list for all: column x in both
    assert spider2_match(df(["p"], [(1,)]), [a, b], [0])


def test_results_go_through_the_official_csv_round_trip():
    res = ExecResult(
        ok=True, columns=["id", "label", "blank"], rows=[("1", "a", ""), ("2", "b", None)]
    )
    frame = result_to_frame(res)
    # '1' (TEXT) is read back as the number 1, '' and NULL both as NaN, as the script reads its CSV
    assert frame["id"].tolist() == [1, 2]
    assert frame["blank"].isna().all()
    assert spider2_table_match(frame, df(["k"], [(1,), (2,)]))
    empty = result_to_frame(ExecResult(ok=True, columns=["a"], rows=[]))
    assert list(empty.columns) == ["a"] and len(empty) == 0


# ----------------------------------------------------------------------------------------------
# Evaluation against a gold folder
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spider2(tmp_path_factory):
    root = tmp_path_factory.mktemp("spider2")
    dbs = root / "localdb"
    dbs.mkdir()
    con = sqlite3.connect(dbs / "sales.sqlite")  # Spider 2.0's flat <db>.sqlite layout
    con.executescript(
        "CREATE TABLE orders (id INTEGER, city TEXT, amount REAL);"
        "INSERT INTO orders VALUES (1, 'paris', 10.004), (2, 'rome', 5.0), (3, 'paris', 2.5);"
    )
    con.commit()
    con.close()
    gold = root / "gold"
    (gold / "exec_result").mkdir(parents=True)
    meta = [
        {"instance_id": "local001", "condition_cols": [0, 1], "ignore_order": True},
        {"instance_id": "local002", "condition_cols": [], "ignore_order": False},
        {"instance_id": "local003", "condition_cols": [], "ignore_order": True},
    ]
    (gold / "spider2lite_eval.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    df(["city", "total", "comment"], [("paris", 12.5, "x"), ("rome", 5.0, "y")]).to_csv(
        gold / "exec_result" / "local001.csv", index=False
    )
    df(["n"], [(2,)]).to_csv(gold / "exec_result" / "local002_a.csv", index=False)
    df(["n"], [(3,)]).to_csv(gold / "exec_result" / "local002_b.csv", index=False)
    # local003 has no gold CSV; local0031 must not be taken for local003
    df(["n"], [(1,)]).to_csv(gold / "exec_result" / "local0031.csv", index=False)
    split = root / "spider2-lite.jsonl"
    entries = [
        {"instance_id": i, "db": "sales", "question": f"q{i}"} for i in ("local001", "local002")
    ] + [{"instance_id": "bq001", "db": "bigquery_only", "question": "cloud"}]
    split.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    return root


@pytest.fixture(scope="module")
def ex(spider2):
    with SQLiteExecutor(spider2 / "localdb", isolation="thread") as e:
        yield e


ROWS = [
    {"instance_id": "local001", "db_id": "sales", "gold_sql": ""},
    {"instance_id": "local002", "db_id": "sales", "gold_sql": ""},
]


def test_load_gold_finds_variants_and_settings(spider2):
    gold = load_spider2_gold(spider2 / "gold")
    assert sorted(gold) == ["local001", "local002"]
    assert [p.name for p in gold["local002"].csv_paths] == ["local002_a.csv", "local002_b.csv"]
    assert gold["local001"].condition_cols == [0, 1] and gold["local001"].ignore_order
    with pytest.raises(FileNotFoundError, match=r"spider2lite_eval\.jsonl"):
        load_spider2_gold(spider2)


def test_evaluate_against_the_official_gold_csvs(spider2, ex):
    preds = [
        # other names, other column order, ±0.01, order ignored for local001; matches local002_b
        "SELECT sum(amount) AS s, city FROM orders GROUP BY city ORDER BY city DESC",
        "SELECT count(*) + 1 FROM orders WHERE city = 'paris'",
    ]
    res = evaluate_spider2_sqlite(preds, ROWS, ex, spider2 / "gold", details=True)
    assert res["metric"] == "spider2" and res["n_correct"] == 2 and res["ex"] == 1.0
    assert res["per_question"][1]["gold_files"] == ["local002_a.csv", "local002_b.csv"]
    wrong = evaluate_spider2_sqlite(
        ["SELECT city FROM orders", "SELECT nope FROM orders"], ROWS, ex, spider2 / "gold"
    )
    assert wrong["n_correct"] == 0 and wrong["n_error"] == 1
    same = evaluate_ex(preds, ROWS, ex, metric="spider2", gold_dir=spider2 / "gold")
    assert same["n_correct"] == 2
    with pytest.raises(ValueError, match="gold_dir"):
        evaluate_ex(preds, ROWS, ex, metric="spider2")


def test_an_instance_without_official_gold_raises(spider2, ex):
    rows = [{"instance_id": "local003", "db_id": "sales", "gold_sql": ""}]
    with pytest.raises(MalformedDatasetError, match="local003"):
        evaluate_spider2_sqlite(["SELECT 1"], rows, ex, spider2 / "gold")


def test_submission_folder_and_cli(spider2, tmp_path):
    from typer.testing import CliRunner

    from agentic_sql.cli import app

    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "local001.sql").write_text("SELECT city, sum(amount) FROM orders GROUP BY city")
    assert read_spider2_predictions(sub, ["local001", "local002"]) == [
        "SELECT city, sum(amount) FROM orders GROUP BY city",
        None,
    ]
    out = tmp_path / "m.json"
    r = CliRunner().invoke(
        app,
        [
            "score",
            "--db-root",
            str(spider2 / "localdb"),
            "--gold",
            str(spider2 / "spider2-lite.jsonl"),
            "--pred",
            str(sub),
            "--metric",
            "spider2",
            "--gold-dir",
            str(spider2 / "gold"),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["metric"] == "spider2" and m["n"] == 2 and m["n_correct"] == 1
    assert m["n_no_answer"] == 1
