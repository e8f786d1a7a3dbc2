"""Executor behaviour (results, caps, parallelism, cache, observations) and result comparison (EX, CSMR)."""

from __future__ import annotations

import math
import random

import pytest

from agentic_sql.compare import (
    _hungarian_max,
    column_set_score,
    ex_match,
    max_weight_assignment,
)
from agentic_sql.errors import DatabaseNotFoundError, SQLParseError, UnsafeSQLError
from agentic_sql.executor import (
    ExecResult,
    SQLiteExecutor,
    find_db_path,
    format_observation,
    transpile,
    validate_readonly,
)

DB = "toy_shop"


@pytest.fixture(scope="module", params=["thread", "process"])
def executor(request, thread_executor, process_executor):
    return thread_executor if request.param == "thread" else process_executor


def R(rows, columns=None, ok=True):
    width = len(rows[0]) if rows else 1
    return ExecResult(ok=ok, columns=columns or [f"c{i}" for i in range(width)], rows=list(rows))


# --------------------------------------------------------------------------- execution


def test_execute_returns_columns_rows_and_timing(executor):
    res = executor.execute(DB, "SELECT name, age FROM customers WHERE age > 30 ORDER BY age")
    assert res.ok and res.error is None and not res.truncated
    assert res.columns == ["name", "age"]
    assert res.rows == [("ann", 34), ("cy", 41), ("dee", 52)]
    assert res.elapsed_s >= 0.0


def test_trailing_semicolons_and_comments_are_accepted(executor):
    assert executor.execute(DB, "SELECT 1;").rows == [(1,)]
    assert executor.execute(DB, "-- a comment\nSELECT 2 ; ").rows == [(2,)]
    q = "WITH t AS (SELECT age FROM customers) SELECT max(age) FROM t"
    assert executor.execute(DB, q).rows == [(52,)]
    q = "SELECT name FROM customers WHERE city = 'paris' UNION SELECT 'zed' ORDER BY 1"
    assert executor.execute(DB, q).rows == [("ann",), ("dee",), ("zed",)]


def test_row_cap_and_per_call_overrides(thread_executor):
    res = thread_executor.execute(DB, "SELECT n FROM numbers")
    assert res.truncated and len(res.rows) == 100 and res.rows[-1] == (99,)
    full = thread_executor.execute(DB, "SELECT n FROM numbers", max_rows=None)
    assert not full.truncated and len(full.rows) == 1000
    exact = thread_executor.execute(DB, "SELECT n FROM numbers LIMIT 100")
    assert not exact.truncated and len(exact.rows) == 100


def test_execute_many_is_parallel_order_preserving_and_matches_sequential(executor):
    items = [(DB, f"SELECT n FROM numbers WHERE n = {i}") for i in range(40)]
    items += [(DB, "SELECT nope FROM customers"), ("toy_school", "SELECT COUNT(*) FROM students")]
    items += [(DB, "DROP TABLE customers")]
    many = executor.execute_many(items)
    assert [r.rows for r in many[:40]] == [[(i,)] for i in range(40)]
    assert many[40].error_kind == "sqlite" and many[41].rows == [(3,)]
    assert many[42].error_kind == "unsafe"
    seq = [executor.execute(d, s) for d, s in items]
    assert [(r.ok, r.rows, r.error) for r in many] == [(r.ok, r.rows, r.error) for r in seq]
    assert executor.execute_many([]) == []


def test_execute_cached_reuses_results_but_not_timeouts(bird_db_root):
    with SQLiteExecutor(bird_db_root, isolation="thread", cache_size=2) as ex:
        a = ex.execute_cached(DB, "SELECT COUNT(*) FROM customers")
        assert ex.execute_cached(DB, "SELECT COUNT(*) FROM customers") is a
        slow = (
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM r) SELECT count(*) FROM r"
        )
        t1 = ex.execute_cached(DB, slow, timeout_s=0.2)
        assert t1.timed_out and ex.execute_cached(DB, slow, timeout_s=0.2) is not t1
        ex.execute_cached(DB, "SELECT 1")
        ex.execute_cached(DB, "SELECT 2")  # evicts the oldest entry (LRU of size 2)
        assert ex.execute_cached(DB, "SELECT COUNT(*) FROM customers") is not a
        many = ex.execute_many([(DB, "SELECT 2")] * 3, use_cache=True)
        assert many[0] is many[1] is many[2]


def test_db_path_layouts_and_errors(tmp_path, bird_db_root):
    assert find_db_path(bird_db_root, DB) == bird_db_root / DB / f"{DB}.sqlite"
    (tmp_path / "flat.sqlite").write_bytes((bird_db_root / DB / f"{DB}.sqlite").read_bytes())
    assert find_db_path(tmp_path, "flat") == tmp_path / "flat.sqlite"  # Spider 2.0-lite layout
    with pytest.raises(DatabaseNotFoundError, match="'missing' not found"):
        find_db_path(tmp_path, "missing")
    with pytest.raises(DatabaseNotFoundError, match="invalid db_id"):
        find_db_path(tmp_path, "../etc")
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        assert ex.db_ids() == ["toy_school", "toy_shop"]
        with pytest.raises(DatabaseNotFoundError) as e:
            ex.db_path("nope")
        assert isinstance(e.value, FileNotFoundError) and e.value.db_id == "nope"


def test_constructor_rejects_bad_arguments(tmp_path, bird_db_root):
    with pytest.raises(DatabaseNotFoundError, match="database folder not found"):
        SQLiteExecutor(tmp_path / "absent")
    with pytest.raises(ValueError, match="isolation"):
        SQLiteExecutor(bird_db_root, isolation="fork")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        SQLiteExecutor(bird_db_root, timeout_s=0)
    with pytest.raises(ValueError, match="max_rows"):
        SQLiteExecutor(bird_db_root, max_rows=0)


def test_executor_pickles_its_configuration(bird_db_root, process_executor):
    import pickle

    clone = pickle.loads(pickle.dumps(process_executor))
    try:
        assert clone.isolation == "process" and clone.timeout_s == process_executor.timeout_s
        assert clone.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]
    finally:
        clone.close()


def test_closed_executor_returns_an_error(bird_db_root):
    ex = SQLiteExecutor(bird_db_root, isolation="thread")
    ex.close()
    ex.close()  # idempotent
    assert not ex.execute(DB, "SELECT 1").ok


# --------------------------------------------------------------------------- parser check


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT 1;", "SELECT 1"),
        ("  SELECT a FROM t ;; ", "SELECT a FROM t"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("SELECT a FROM t EXCEPT SELECT a FROM u", "SELECT a FROM t EXCEPT SELECT a FROM u"),
    ],
)
def test_validate_readonly_accepts_single_queries(sql, expected):
    assert validate_readonly(sql) == expected


@pytest.mark.parametrize(
    "sql, match",
    [
        ("DROP TABLE t", "got DROP"),
        ("SELECT 1; SELECT 2", "exactly one statement, got 2"),
        ("PRAGMA table_info(t)", "got PRAGMA"),
        ("/* hi */ ATTACH 'x' AS y", "got ATTACH"),
        ("SELECT load_extension('x')", "load_extension"),
        ("", "empty"),
    ],
)
def test_validate_readonly_rejects(sql, match):
    with pytest.raises(UnsafeSQLError, match=match):
        validate_readonly(sql)


def test_validate_readonly_reports_unparsable_sql():
    with pytest.raises(SQLParseError):
        validate_readonly("SELECT CAST(1 AS)")
    with pytest.raises(UnsafeSQLError, match="string"):
        validate_readonly(None)  # type: ignore[arg-type]


def test_transpile():
    assert transpile("SELECT IFF(a > 1, 'x', 'y') FROM t", read="snowflake") == (
        "SELECT IIF(a > 1, 'x', 'y') FROM t"
    )
    with pytest.raises(SQLParseError):
        transpile("SELECT (", read="bigquery")


# --------------------------------------------------------------------------- observations


def test_format_observation_caps_rows_and_cells():
    res = R([(i, "x" * 300) for i in range(7)], columns=["id", "text"])
    obs = format_observation(res, max_rows=3, max_cell_chars=10)
    lines = obs.splitlines()
    assert lines[0] == "id | text"
    assert lines[1] == "0 | xxxxxxx..."
    assert lines[-1] == "... (4 more rows)" and len(lines) == 5
    trunc = ExecResult(ok=True, columns=["n"], rows=[(1,), (2,)], truncated=True)
    assert format_observation(trunc, max_rows=1).endswith(
        "(1+ more rows; the result was cut at 2 rows)"
    )
    assert format_observation(trunc).endswith("... (more rows; the result was cut at 2 rows)")
    assert format_observation(R([], columns=["a"])) == "a\n(0 rows)"
    assert format_observation(R([(None, "a\nb|c")])).splitlines()[1] == "NULL | a b\\|c"
    err = ExecResult(ok=False, error="OperationalError: no such table: x")
    assert format_observation(err) == "Error: OperationalError: no such table: x"


# --------------------------------------------------------------------------- EX


def _official_bird_ex(pred_rows, gold_rows):
    """BIRD's rule, restated: correct iff the sets of row tuples are equal."""
    return set(pred_rows) == set(gold_rows)


def test_ex_match_agrees_with_the_bird_rule_on_random_results():
    rng = random.Random(0)
    for _ in range(300):
        gold = [tuple(rng.randint(0, 3) for _ in range(2)) for _ in range(rng.randint(0, 5))]
        pred = list(gold)
        op = rng.randrange(5)
        if op == 0:
            rng.shuffle(pred)  # order ignored
        elif op == 1 and pred:
            pred.append(pred[0])  # duplicates ignored
        elif op == 2:
            pred = [tuple(reversed(r)) for r in pred]  # column order matters
        elif op == 3:
            pred = pred[1:]
        assert ex_match(R(pred), R(gold)) == _official_bird_ex(pred, gold)


def test_ex_match_details():
    assert ex_match(R([(1,)]), R([(1.0,)]))  # 1 == 1.0 as in Python / the official script
    assert ex_match(R([(float("nan"),)]), R([(float("nan"),)]))
    assert not ex_match(R([(1,)], ok=False), R([(1,)]))
    assert not ex_match(None, R([(1,)]))
    assert ex_match(R([(1,), (2,)]), R([(2,), (1,)]))
    assert not ex_match(R([(1,), (2,)]), R([(2,), (1,)]), order_sensitive=True)
    assert not ex_match(R([(0.1 + 0.2,)]), R([(0.3,)]))
    assert ex_match(R([(0.1 + 0.2,)]), R([(0.3,)]), float_round=6)


# --------------------------------------------------------------------------- CSMR


def test_csmr_modes_and_bounds():
    gold = R([(1, "a"), (2, "b"), (3, "c")])
    assert column_set_score(gold, gold) == 1.0
    half = R([(1, "a"), (2, "b"), (4, "z")])  # no column set equal
    assert column_set_score(half, gold) == 0.0
    j = column_set_score(half, gold, mode="jaccard")
    assert j == pytest.approx(0.5)  # both columns share 2 of 4 values
    assert column_set_score(half, gold, mode="jaccard", cap_partial=0.3) == pytest.approx(0.3)
    err = ExecResult(ok=False, error="x")
    assert column_set_score(err, gold) == 0.0
    assert column_set_score(err, gold, err_score=-0.5) == -0.5
    with pytest.raises(ValueError, match="cap_partial"):
        column_set_score(gold, gold, cap_partial=1.5)
    with pytest.raises(ValueError, match="mode"):
        column_set_score(gold, gold, mode="fuzzy")  # type: ignore[arg-type]


def test_csmr_on_real_results(thread_executor):
    run = lambda q: thread_executor.execute(DB, q)  # noqa: E731
    gold = run("SELECT name, city FROM customers WHERE age > 30")
    assert column_set_score(run("SELECT city, name FROM customers WHERE age > 30"), gold) == 0.9
    extra = run("SELECT name, city, age FROM customers WHERE age > 30")
    assert column_set_score(extra, gold) == pytest.approx(0.8)
    assert column_set_score(run("SELECT 1 FROM customers WHERE 0"), gold) == 0.0


def test_builtin_hungarian_matches_scipy():
    rng = random.Random(1)
    for _ in range(200):
        r, c = rng.randint(1, 6), rng.randint(1, 6)
        w = [[rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]) for _ in range(c)] for _ in range(r)]
        ours = _hungarian_max(w)
        ref = max_weight_assignment(w)
        assert len(ours) == min(r, c)
        assert len({i for i, _ in ours}) == len(ours) == len({j for _, j in ours})
        assert math.isclose(sum(w[i][j] for i, j in ours), sum(w[i][j] for i, j in ref))
