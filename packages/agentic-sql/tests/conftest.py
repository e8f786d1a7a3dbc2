"""Shared fixtures: the committed BIRD/Spider fixture folders, the synthetic suite, sandbox executors.

``_databases_unchanged`` (session, autouse) hashes every fixture database before the first test and
checks after the last one that no byte changed — whatever the sandbox tests threw at them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BIRD_DIR = FIXTURES / "bird"
SPIDER_DIR = FIXTURES / "spider"


def _hash_dbs(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _fixture_dbs() -> list[Path]:
    return sorted(FIXTURES.rglob("*.sqlite"))


@pytest.fixture(scope="session", autouse=True)
def _databases_unchanged():
    dbs = _fixture_dbs()
    assert dbs, f"no fixture databases under {FIXTURES}"
    before = _hash_dbs(dbs)
    yield
    after = _hash_dbs(dbs)
    assert after == before, "a fixture database changed during the test session"
    assert _fixture_dbs() == dbs, "files appeared or vanished under tests/fixtures"
    leftovers = [p for p in FIXTURES.rglob("*") if p.suffix in (".sqlite-journal", ".sqlite-wal")]
    assert not leftovers, f"journal files left behind: {leftovers}"


@pytest.fixture(scope="session")
def bird_dir() -> Path:
    return BIRD_DIR


@pytest.fixture(scope="session")
def bird_db_root() -> Path:
    return BIRD_DIR / "dev_databases"


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    return SPIDER_DIR


@pytest.fixture(scope="session")
def synthetic_suite(tmp_path_factory, _databases_unchanged):
    """``(dataset, db_root)`` of the default synthetic suite (4 databases, 200 questions)."""
    from agentic_sql.data import make_synthetic_task_suite

    ds, root = make_synthetic_task_suite(out_dir=tmp_path_factory.mktemp("synthetic"))
    dbs = sorted(Path(root).rglob("*.sqlite"))
    before = _hash_dbs(dbs)
    yield ds, Path(root)
    assert _hash_dbs(dbs) == before, "a synthetic suite database changed during the session"


@pytest.fixture(scope="session")
def thread_executor(bird_db_root):
    from agentic_sql.executor import SQLiteExecutor

    with SQLiteExecutor(bird_db_root, timeout_s=1.0, isolation="thread", max_rows=100) as ex:
        yield ex


@pytest.fixture(scope="session")
def process_executor(bird_db_root):
    from agentic_sql.executor import SQLiteExecutor

    with SQLiteExecutor(bird_db_root, timeout_s=1.0, isolation="process", max_rows=100) as ex:
        yield ex


ANN_BOB_CY = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "oslo", 41)]


def _make_shop_db(root: Path, customers=ANN_BOB_CY, *, extra_sql: str = "") -> Path:
    """``root/shop/shop.sqlite`` with a ``customers(id, name, city, age)`` table (+ ``extra_sql``)."""
    (root / "shop").mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(root / "shop" / "shop.sqlite")
    con.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER)"
    )
    con.executemany("INSERT INTO customers VALUES (?,?,?,?)", customers)
    if extra_sql:
        con.executescript(extra_sql)
    con.commit()
    con.close()
    return root


@pytest.fixture(scope="session")
def make_shop_db():
    """Factory: ``make_shop_db(root, customers=..., extra_sql=...)`` builds the small ``shop`` database."""
    return _make_shop_db


def make_counting_db(root: Path, n_rows: int) -> Path:
    """``root/big/big.sqlite`` with one table ``t(x)`` holding 0 .. n_rows − 1 (row-cap tests)."""
    (root / "big").mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(root / "big" / "big.sqlite")
    con.execute("CREATE TABLE t (x INTEGER)")
    con.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(n_rows)))
    con.commit()
    con.close()
    return root


@pytest.fixture(scope="session")
def counting_db():
    """:func:`make_counting_db`, as a fixture (test modules do not import conftest)."""
    return make_counting_db
