"""Malicious and broken queries: each one gives a clear error observation and never changes the database."""

from __future__ import annotations

import hashlib
import time

import pytest

from agentic_sql.executor import SandboxLimits, SQLiteExecutor, format_observation

DB = "toy_shop"

ATTACKS = {
    "drop": "DROP TABLE customers",
    "delete": "DELETE FROM customers",
    "update": "UPDATE customers SET age = 0",
    "insert": "INSERT INTO customers VALUES (9, 'mal', 'x', 1)",
    "replace": "REPLACE INTO customers VALUES (1, 'mal', 'x', 1)",
    "create": "CREATE TABLE evil (a)",
    "create_temp": "CREATE TEMP TABLE evil (a)",
    "create_view": "CREATE VIEW v AS SELECT 1",
    "alter": "ALTER TABLE customers ADD COLUMN evil TEXT",
    "attach": "ATTACH DATABASE '{tmp}/attached.db' AS evil",
    "detach": "DETACH DATABASE main",
    "pragma_query_only_off": "PRAGMA query_only = 0",
    "pragma_writable_schema": "PRAGMA writable_schema = ON",
    "pragma_journal": "PRAGMA journal_mode = WAL",
    "vacuum": "VACUUM",
    "vacuum_into": "VACUUM INTO '{tmp}/copy.db'",
    "reindex": "REINDEX",
    "analyze": "ANALYZE",
    "begin": "BEGIN",
    "multi_select_then_drop": "SELECT 1; DROP TABLE customers",
    "multi_two_selects": "SELECT name FROM customers; SELECT 1",
    "cte_delete": "WITH x AS (SELECT 1) DELETE FROM customers",
    "load_extension": "SELECT load_extension('/tmp/evil.so')",
    "load_extension_nested": "SELECT name FROM customers WHERE load_extension('/tmp/evil.so') IS NULL",
    "writefile": "SELECT writefile('{tmp}/evil.txt', 'x')",
}
#: attacks that would create a file: the target must not exist afterwards
FILE_TARGETS = {"attach": "attached.db", "vacuum_into": "copy.db", "writefile": "evil.txt"}


def attack(name: str, tmp_path) -> str:
    """The attack's SQL, with file targets in a fresh folder (so their absence is meaningful)."""
    return ATTACKS[name].replace("{tmp}", str(tmp_path))


def assert_no_file_created(name: str, tmp_path) -> None:
    assert not list(tmp_path.iterdir()), f"{name} created {list(tmp_path.iterdir())}"
    if name in FILE_TARGETS:
        assert not (tmp_path / FILE_TARGETS[name]).exists()


def _hash(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shop_hash(bird_db_root):
    path = bird_db_root / DB / f"{DB}.sqlite"
    before = _hash(path)
    yield
    assert _hash(path) == before, "the database file changed"


@pytest.fixture(scope="module", params=["thread", "process"])
def executor(request, thread_executor, process_executor):
    return thread_executor if request.param == "thread" else process_executor


@pytest.fixture(scope="module")
def no_parser_executor(bird_db_root):
    """Without the sqlglot check: SQLite's read-only mode and authorizer must hold on their own."""
    limits = SandboxLimits(validate=False)
    with SQLiteExecutor(bird_db_root, timeout_s=1.0, isolation="thread", limits=limits) as ex:
        yield ex


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_refused_with_a_clear_error(executor, shop_hash, name, tmp_path):
    res = executor.execute(DB, attack(name, tmp_path))
    assert_no_file_created(name, tmp_path)
    assert not res.ok and not res.timed_out
    assert res.error_kind == "unsafe", res.error
    assert "UnsafeSQLError" in res.error
    obs = format_observation(res)
    assert obs.startswith("Error: UnsafeSQLError")
    # the database still answers and still holds its data
    assert executor.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]


# statements that SQLite may run as no-ops on a read-only file when the parser check is off
NOOPS_ON_READONLY = {"reindex"}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_without_the_parser_check(no_parser_executor, shop_hash, name, tmp_path):
    res = no_parser_executor.execute(DB, attack(name, tmp_path))
    assert_no_file_created(name, tmp_path)
    if name in NOOPS_ON_READONLY:
        assert res.rows == []
        return
    assert not res.ok, name
    assert res.error and "\n" not in res.error
    assert no_parser_executor.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]


def test_authorizer_names_what_it_denied(no_parser_executor):
    res = no_parser_executor.execute(DB, "SELECT load_extension('/tmp/evil.so')")
    assert res.error_kind == "unsafe" and "load_extension" in res.error
    res = no_parser_executor.execute(DB, "PRAGMA query_only = 0")
    assert res.error_kind == "unsafe" and "PRAGMA" in res.error
    res = no_parser_executor.execute(DB, "ATTACH DATABASE ':memory:' AS x")
    assert not res.ok and "ATTACH" in res.error.upper()


INFINITE_CTE = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r"
)


@pytest.mark.parametrize(
    "sql",
    [
        INFINITE_CTE,
        "SELECT count(*) FROM numbers a, numbers b, numbers c",  # 10^9-row cartesian join
        "SELECT max(length(s)) FROM (WITH RECURSIVE r(x, s) AS (SELECT 1, 'a' UNION ALL "
        "SELECT x + 1, substr(s || s, 1, 1000) FROM r) SELECT s FROM r)",
    ],
    ids=["recursive_cte", "cartesian_count", "recursive_strings"],
)
def test_runaway_queries_time_out_within_budget(executor, shop_hash, sql):
    t0 = time.monotonic()
    res = executor.execute(DB, sql, timeout_s=0.5)
    elapsed = time.monotonic() - t0
    assert res.timed_out and not res.ok and res.error_kind == "timeout"
    assert "timeout" in format_observation(res)
    assert 0.5 <= elapsed < 0.5 + 1.0
    assert executor.execute(DB, "SELECT 1").rows == [(1,)]  # still usable


def test_watchdog_interrupts_when_the_progress_handler_is_silent(bird_db_root):
    limits = SandboxLimits(progress_every=2**30, watchdog_grace_s=0.3)
    with SQLiteExecutor(bird_db_root, timeout_s=0.5, isolation="thread", limits=limits) as ex:
        t0 = time.monotonic()
        res = ex.execute(DB, INFINITE_CTE)
        assert res.timed_out and time.monotonic() - t0 < 0.5 + 0.3 + 1.0


def test_unresponsive_worker_is_killed_and_replaced(bird_db_root):
    limits = SandboxLimits(progress_every=2**30, watchdog_grace_s=60.0, kill_grace_s=0.5)
    with SQLiteExecutor(
        bird_db_root, timeout_s=0.5, isolation="process", max_workers=1, limits=limits
    ) as ex:
        assert ex.execute(DB, "SELECT 1").rows == [(1,)]
        pid = ex._workers[0].proc.pid
        t0 = time.monotonic()
        res = ex.execute(DB, INFINITE_CTE)
        assert res.timed_out and "killed" in res.error
        assert time.monotonic() - t0 < 0.5 + 0.5 + 1.5
        assert ex.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]
        assert ex._workers[0].proc.pid != pid


def test_a_stuck_query_inside_a_pipelined_batch_does_not_lose_the_others(bird_db_root):
    limits = SandboxLimits(progress_every=2**30, watchdog_grace_s=60.0, kill_grace_s=0.5)
    items = [(DB, f"SELECT n FROM numbers WHERE n = {i}") for i in range(40)]
    items[3] = (DB, INFINITE_CTE)
    items[25] = ("no_such_db", "SELECT 1")
    with SQLiteExecutor(
        bird_db_root, timeout_s=0.5, isolation="process", max_workers=1, limits=limits
    ) as ex:
        res = ex.execute_many(items)
    assert res[3].timed_out and res[25].error_kind == "not_found"
    assert all(res[i].rows == [(i,)] for i in range(40) if i not in (3, 25))


def test_memory_bomb_hits_the_worker_memory_limit(bird_db_root):
    bomb = (
        "SELECT count(*) FROM (SELECT a.n, b.n, randomblob(300) FROM numbers a, numbers b "
        "ORDER BY 3)"
    )  # a 300 MB sort
    with SQLiteExecutor(
        bird_db_root, timeout_s=20.0, isolation="process", max_workers=1, memory_limit_mb=256
    ) as ex:
        res = ex.execute(DB, bomb)
        assert not res.ok and res.error_kind == "memory" and "out of memory" in res.error
        assert ex.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]


def test_huge_results_are_truncated_not_materialised(executor):
    res = executor.execute(DB, "SELECT a.n, b.n FROM numbers a, numbers b")  # 10^6 rows
    assert res.ok and res.truncated and len(res.rows) == executor.max_rows
    obs = format_observation(res, max_rows=5)
    assert obs.count("\n") == 6 and "more rows" in obs


def test_oversized_values_are_refused(executor):
    res = executor.execute(DB, "SELECT length(zeroblob(100000000))")
    assert not res.ok and "too big" in res.error


def test_syntax_errors_come_back_from_sqlite(executor):
    res = executor.execute(DB, "SELEC name FRM customers")
    assert not res.ok and res.error_kind == "sqlite" and "syntax error" in res.error
    res = executor.execute(DB, "SELECT nope FROM customers")
    assert "no such column: nope" in format_observation(res)


def test_sqlglot_does_not_judge_valid_sqlite(executor):
    # sqlglot parses a bare VALUES as a non-query expression; SQLite runs it (read-only)
    res = executor.execute(DB, "VALUES (1), (2)")
    assert res.ok and res.rows == [(1,), (2,)]


def test_empty_and_non_string_queries(executor):
    for sql in ("", "   ", ";", "-- only a comment"):
        res = executor.execute(DB, sql)
        assert not res.ok and res.error_kind == "unsafe" and "empty" in res.error
    res = executor.execute(DB, None)  # type: ignore[arg-type]
    assert not res.ok and "string" in res.error


def test_non_utf8_text_blob_and_inf_are_safe(executor):
    res = executor.execute(DB, 'SELECT note, raw FROM "order notes" ORDER BY order_id')
    assert res.ok
    assert res.rows[0] == ("fragile", b"\x00\xff\x10")
    assert res.rows[1][0] == "\\xff\\xfeAB"  # invalid UTF-8 bytes kept distinct and printable
    obs = format_observation(res)
    obs.encode("utf-8")  # always encodable
    assert "b'\\x00\\xff\\x10'" in obs and "NULL" in obs
    inf = executor.execute(DB, "SELECT amount FROM orders WHERE id = 5")
    assert inf.rows == [(float("inf"),)] and "inf" in format_observation(inf)


def test_unknown_database_is_an_error_observation_not_an_exception(executor):
    res = executor.execute("no_such_db", "SELECT 1")
    assert not res.ok and res.error_kind == "not_found" and "no_such_db" in res.error
    res = executor.execute("../toy_shop", "SELECT 1")
    assert not res.ok and "invalid db_id" in res.error


# ----------------------------------------------------------------------------------------------
# Read-only table-valued functions (issue 21, §6): allowed, and a refusal names its real cause
# ----------------------------------------------------------------------------------------------

READONLY_TVFS = {
    "SELECT name, type FROM pragma_table_info('customers') ORDER BY cid LIMIT 2": [
        ("id", "INTEGER"),
        ("name", "TEXT"),
    ],
    "SELECT count(*) FROM pragma_table_xinfo('customers')": None,
    "SELECT count(*) FROM pragma_index_list('customers')": None,
    "SELECT \"table\" FROM pragma_foreign_key_list('orders')": [("customers",)],
    "SELECT count(*) > 0 FROM pragma_table_list WHERE name = 'customers'": [(1,)],
    "SELECT value FROM json_each('[1, 2, 3]')": [(1,), (2,), (3,)],
    'SELECT key FROM json_tree(\'{"a": {"b": 1}}\') WHERE key IS NOT NULL ORDER BY key': [
        ("a",),
        ("b",),
    ],
    "SELECT c.name FROM customers AS c, json_each('[1, 3]') AS j WHERE c.id = j.value ORDER BY 1": None,
    "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
    "WHERE m.name = 'customers' AND p.pk = 1": [("customers", "id")],
}


@pytest.mark.parametrize("sql", sorted(READONLY_TVFS))
def test_read_only_table_valued_functions_are_allowed(executor, shop_hash, sql):
    res = executor.execute(DB, sql)
    assert res.ok, res.error
    if READONLY_TVFS[sql] is not None:
        assert res.rows == READONLY_TVFS[sql]
    assert executor.execute(DB, "SELECT COUNT(*) FROM customers").rows == [(5,)]


REFUSED_PRAGMA_FUNCTIONS = {
    "SELECT * FROM pragma_database_list": "database_list",  # file paths
    "SELECT * FROM pragma_journal_mode": "journal_mode",
    "SELECT * FROM pragma_query_only": "query_only",
    "SELECT * FROM pragma_writable_schema": "writable_schema",
    "SELECT * FROM pragma_compile_options": "compile_options",
}


@pytest.mark.parametrize("sql", sorted(REFUSED_PRAGMA_FUNCTIONS))
def test_other_pragma_functions_are_refused_naming_the_pragma(executor, shop_hash, sql):
    res = executor.execute(DB, sql)
    name = REFUSED_PRAGMA_FUNCTIONS[sql]
    assert res.error_kind == "unsafe" and "\n" not in res.error
    # the real cause (was: "UPDATE sqlite_master is not allowed")
    assert f"PRAGMA {name} (table-valued function pragma_{name}) is not allowed" in res.error
    assert "pragma_table_info" in res.error  # what is allowed instead
    assert "sqlite_master" not in res.error


def test_table_valued_functions_without_the_parser_check_are_refused_with_the_cause(
    no_parser_executor,
):
    for sql in ("SELECT value FROM json_each('[1]')", "SELECT * FROM pragma_table_info('t')"):
        res = no_parser_executor.execute(DB, sql)
        assert res.error_kind == "unsafe", res.error
        assert "table-valued functions" in res.error and "could parse" in res.error
        assert "vtable constructor failed" not in res.error and "sqlite_master" not in res.error
    # a real write of the schema table is still named as such
    res = no_parser_executor.execute(DB, "UPDATE sqlite_master SET sql = 'x'")
    assert res.error_kind == "unsafe" and "table-valued" not in res.error
