"""Spider's official execution metric (test-suite ``result_eq``) as ``metric="spider_ex"``.

Cases follow the behaviour of taoyds/test-suite-sql-eval ``exec_eval.py``: column permutations,
rows as bags, ordered comparison when ``order by`` occurs anywhere in the gold query, DISTINCT
removed from both queries by default, every database variant of the folder.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from agentic_sql.errors import GoldQueryError
from agentic_sql.eval import evaluate_ex, gold_is_ordered
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.spider_eval import (
    evaluate_spider_ex,
    order_matters,
    postprocess,
    remove_distinct,
    spider_exec_match,
    spider_result_eq,
)

# ----------------------------------------------------------------------------------------------
# result_eq on rows
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "pred", "ordered", "expected"),
    [
        # column order is free
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False, True),
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
        # rows are bags: same set, other multiplicities
        ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),
        ([(1,), (1,), (2,)], [(2,), (1,), (1,)], False, True),
        # order matters only when asked
        ([(1,), (2,)], [(2,), (1,)], False, True),
        ([(1,), (2,)], [(2,), (1,)], True, False),
        # counts of rows and columns must agree; two empty results are equal
        ([(1,)], [(1,), (1,)], False, False),
        ([(1, 2)], [(1,)], False, False),
        ([], [], True, True),
        ([], [(1,)], False, False),
        # Python value equality, as the script's tuples: 1 == 1.0, '1' != 1
        ([(1,)], [(1.0,)], False, True),
        ([(1,)], [("1",)], False, False),
        ([(None, 1)], [(1, None)], False, True),
        # one permutation for all rows: swapping inside a single row is not allowed
        ([(1, 2, 3, 4), (5, 6, 7, 8)], [(2, 1, 4, 3), (6, 5, 8, 7)], False, True),
        ([(1, 2, 3, 4), (5, 6, 7, 8)], [(2, 1, 4, 3), (5, 6, 8, 7)], False, False),
        # a cross join of two right columns is not the answer
        ([(1, "a"), (2, "b")], [(1, "b"), (2, "a")], False, False),
    ],
)
def test_result_eq_cases(gold, pred, ordered, expected):
    assert spider_result_eq(gold, pred, ordered) is expected


def test_result_eq_with_many_equal_columns_is_fast_and_exact():
    n = 9  # 9! permutations if nothing were pruned
    gold = [tuple(range(i, i + n)) for i in range(0, 40, n)]
    pred = [tuple(reversed(r)) for r in gold]
    assert spider_result_eq(gold, pred, True)
    bad = [*pred[:-1], tuple(pred[-1][1:] + pred[-1][:1])]
    assert not spider_result_eq(gold, bad, False)


def test_query_processing_like_the_official_script():
    assert postprocess("SELECT a FROM t WHERE b > = 1 AND c < = 2 AND d ! = 3") == (
        "SELECT a FROM t WHERE b >= 1 AND c <= 2 AND d != 3"
    )
    assert remove_distinct("SELECT DISTINCT name FROM t") == "SELECT  name FROM t"
    assert remove_distinct("SELECT count(DISTINCT a) FROM t") == "SELECT count( a) FROM t"
    # string literals and quoted identifiers keep the word
    assert remove_distinct("SELECT 'distinct', \"distinct\" FROM t") == (
        "SELECT 'distinct', \"distinct\" FROM t"
    )
    # "order by" anywhere in the gold text, a subquery's included (the approximation misses it)
    sub = "SELECT name FROM (SELECT name FROM singer ORDER BY age)"
    assert order_matters(sub) and not gold_is_ordered(sub)
    assert order_matters("select a from t order by a") and not order_matters("SELECT a FROM t")


# ----------------------------------------------------------------------------------------------
# Execution on a database folder with variants
# ----------------------------------------------------------------------------------------------

SINGERS = [(1, "ann", "France", 25), (2, "bob", "France", 41), (3, "cy", "Peru", 33)]
SINGERS_V1 = [(1, "ann", "France", 52), (2, "bob", "Chile", 20), (3, "cy", "Peru", 33)]


def _db(path, rows, extra=""):
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INT)"
    )
    con.executemany("INSERT INTO singer VALUES (?,?,?,?)", rows)
    if extra:
        con.executescript(extra)
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def spider_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("spider")
    (root / "concert").mkdir()
    _db(root / "concert" / "concert.sqlite", SINGERS)
    _db(root / "concert" / "concert_v1.sqlite", SINGERS_V1)  # a test-suite variant
    (root / "flat").mkdir()
    _db(root / "flat" / "flat.sqlite", SINGERS, "CREATE TABLE only_main (x INT);")
    _db(root / "flat" / "flat_v1.sqlite", SINGERS)  # lacks only_main: gold errors there
    return root


@pytest.fixture(scope="module")
def ex(spider_root):
    with SQLiteExecutor(spider_root, isolation="thread", max_workers=2) as e:
        yield e


def match(ex, pred, gold, **kw):
    return spider_exec_match(ex, "concert", pred, gold, **kw)


def test_variants_are_found_and_all_must_match(ex):
    assert [p.name for p in ex.db_variants("concert")] == ["concert.sqlite", "concert_v1.sqlite"]
    gold = "SELECT name FROM singer WHERE singer_id IN (2, 3)"
    pred = "SELECT name FROM singer WHERE age > 30"  # right on the main db only
    m = match(ex, pred, gold)
    assert not m.correct and m.n_dbs == 2 and m.failed_db == "concert_v1.sqlite"
    assert match(ex, pred, gold, all_variants=False).correct
    assert match(ex, gold, gold).correct


def test_execution_cases_where_bird_ex_and_spider_ex_differ(ex):
    # column permutation: Spider accepts, BIRD's set of rows does not
    rows = [
        {"db_id": "concert", "gold_sql": "SELECT name, age FROM singer"},
        # DISTINCT is removed from both queries (the script's default)
        {"db_id": "concert", "gold_sql": "SELECT country FROM singer"},
        # bags: an extra duplicate row is wrong for Spider, invisible to a set
        {"db_id": "concert", "gold_sql": "SELECT country FROM singer"},
        # ORDER BY in a subquery makes the comparison ordered
        {
            "db_id": "concert",
            "gold_sql": "SELECT name FROM (SELECT name FROM singer ORDER BY age DESC)",
        },
    ]
    preds = [
        "SELECT age, name FROM singer",
        "SELECT DISTINCT country FROM singer",
        "SELECT country FROM singer UNION ALL SELECT country FROM singer WHERE age > 40",
        "SELECT name FROM singer ORDER BY name",
    ]
    spider = evaluate_spider_ex(preds, rows, ex, details=True)
    assert [r["correct"] for r in spider["per_question"]] == [1, 1, 0, 0]
    assert spider["metric"] == "spider_ex" and spider["n_db_files"] == 2
    bird = evaluate_ex(preds, rows, ex, order_sensitive="auto", details=True)
    assert [r["correct"] for r in bird["per_question"]] == [0, 1, 1, 1]
    kept = evaluate_spider_ex(preds, rows, ex, keep_distinct=True, details=True)
    assert [r["correct"] for r in kept["per_question"]] == [1, 0, 0, 0]
    # the same through evaluate_ex(metric=...)
    again = evaluate_ex(preds, rows, ex, metric="spider_ex", details=True)
    assert [r["correct"] for r in again["per_question"]] == [1, 1, 0, 0]


def test_errors_timeouts_and_missing_answers_are_wrong_and_counted(ex):
    rows = [{"db_id": "concert", "gold_sql": "SELECT count(*) FROM singer"}] * 3
    res = evaluate_spider_ex(
        ["SELECT nope FROM singer", None, "SELECT count(*) FROM singer"], rows, ex
    )
    assert res["n_correct"] == 1 and res["n_error"] == 1 and res["n_no_answer"] == 1
    assert res["ex"] == pytest.approx(1 / 3)


def test_a_gold_query_failing_on_a_variant_raises(ex):
    with pytest.raises(GoldQueryError, match=r"flat_v1\.sqlite") as err:
        spider_exec_match(ex, "flat", "SELECT 1", "SELECT count(*) FROM only_main")
    assert "every database variant" in str(err.value)
    with pytest.raises(ValueError, match="metric must be"):
        evaluate_ex(["SELECT 1"], [{"db_id": "flat", "gold_sql": "SELECT 1"}], ex, metric="nope")


def test_cli_score_with_spider_ex(spider_root, tmp_path):
    from typer.testing import CliRunner

    from agentic_sql.cli import app

    gold = tmp_path / "dev.json"
    gold.write_text(
        json.dumps(
            [
                {"db_id": "concert", "question": "q1", "query": "SELECT name, age FROM singer"},
                {"db_id": "concert", "question": "q2", "query": "SELECT name FROM singer"},
            ]
        )
    )
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(["SELECT age, name FROM singer", "SELECT country FROM singer"]))
    out = tmp_path / "m.json"
    args = ["score", "--db-root", str(spider_root), "--pred", str(pred), "--gold", str(gold)]
    r = CliRunner().invoke(app, [*args, "--metric", "spider_ex", "-o", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["metric"] == "spider_ex" and m["n_correct"] == 1 and m["n"] == 2
    r = CliRunner().invoke(app, [*args, "-o", str(out)])  # BIRD EX: the permutation is wrong
    assert r.exit_code == 0 and json.loads(out.read_text())["n_correct"] == 0
