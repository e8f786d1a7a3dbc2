"""Gold queries run once, in parallel, at construction; failures are cached, counted, and raised,
dropped or flagged — never a wrong score and never re-run at every reset (issue 21, §4)."""

from __future__ import annotations

import time

import pytest

from agentic_sql.env import make_environment_factory
from agentic_sql.errors import GoldQueryError
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.rewards import GoldCache, make_reward_funcs, prerun_gold

GOLD = "SELECT name FROM customers WHERE age > 30"
#: a gold query that never finishes within the gold timeout (4 x 0.1 s)
SLOW = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
    "SELECT count(*) FROM (SELECT x FROM r LIMIT 1000000000)"
)
BAD = "SELECT no_such_column FROM customers"


class Recorder:
    """A duck-typed executor around a real one that records the calls the library makes."""

    def __init__(self, inner: SQLiteExecutor):
        self.inner = inner
        self.timeout_s, self.max_rows = inner.timeout_s, inner.max_rows
        self.execute_calls: list[tuple[str, str]] = []
        self.many_calls: list[list[tuple[str, str]]] = []

    def db_path(self, db_id):
        return self.inner.db_path(db_id)

    def execute(self, db_id, sql, **kw):
        self.execute_calls.append((db_id, sql))
        return self.inner.execute(db_id, sql, **kw)

    def execute_many(self, items, **kw):
        self.many_calls.append(list(items))
        return self.inner.execute_many(items, **kw)

    def close(self):
        self.inner.close()


def rows(*golds):
    return [
        {"prompt": [{"role": "user", "content": f"q{i}"}], "db_id": "shop", "gold_sql": g}
        for i, g in enumerate(golds)
    ]


@pytest.fixture(scope="module")
def shop_root(tmp_path_factory, make_shop_db):
    return make_shop_db(tmp_path_factory.mktemp("gold"))


@pytest.fixture(scope="module")
def proc(shop_root):
    with SQLiteExecutor(shop_root, timeout_s=0.1, isolation="process", max_workers=2) as ex:
        yield ex


def test_factory_preruns_every_distinct_gold_once_in_one_parallel_batch(proc):
    data = rows(GOLD, SLOW, SLOW, BAD, GOLD)
    rec = Recorder(proc)
    with pytest.raises(GoldQueryError) as err:  # default: raise, listing the failures
        make_environment_factory(executor=rec, dataset=data)
    msg = str(err.value)
    assert "2 gold queries cannot run (3 dataset rows)" in msg and "on_failure='drop'" in msg
    assert {f.rows for f in err.value.failures} == {(1, 2), (3,)}
    # the distinct gold queries went to the pool in ONE execute_many (parallel), none one by one
    assert rec.many_calls == [[("shop", GOLD), ("shop", SLOW), ("shop", BAD)]]
    assert rec.execute_calls == []


def test_drop_removes_failing_rows_and_resets_never_rerun_a_gold_query(proc):
    data = rows(GOLD, SLOW, SLOW, BAD, GOLD)
    rec = Recorder(proc)
    f = make_environment_factory(executor=rec, dataset=data, on_gold_failure="drop", max_turns=2)
    rep = f.gold_report
    assert rep.n_rows == 5 and rep.n_distinct == 3 and rep.n_failed_rows == 3
    assert rep.dropped_rows == [1, 2, 3]
    assert [r["gold_sql"] for r in f.dataset] == [GOLD, GOLD]
    by_sql = {x.gold_sql: x for x in f.gold_failures()}
    assert by_sql[SLOW].timed_out and by_sql[SLOW].rows == (1, 2)
    assert by_sql[BAD].error_kind == "sqlite" and "no_such_column" in by_sql[BAD].error
    # was: a timed-out gold re-ran at every reset (4 x the timeout each, sequentially)
    env = f()
    t0 = time.monotonic()
    for _ in range(5):
        env.reset(**data[1])
        assert not env.gold_valid and env.get_reward() is None  # flagged, never a wrong score
        env.reset(**data[0])
        assert env.gold_valid
    assert time.monotonic() - t0 < 0.3  # 5 gold timeouts would take >= 2 s
    assert rec.execute_calls == [] and len(rec.many_calls) == 1


def test_flag_keeps_rows_with_reward_none_and_a_count(proc, caplog):
    import logging

    data = rows(GOLD, BAD)
    with caplog.at_level(logging.WARNING, logger="agentic_sql.rewards"):
        f = make_environment_factory(executor=proc, dataset=data, on_gold_failure="flag")
    assert f.dataset == data and f.gold_report.dropped_rows == [1]
    assert any(
        "1 of 2 rows" in r.getMessage() and "flagged" in r.getMessage() for r in caplog.records
    )
    env = f()
    env.reset(**data[1])
    env.submit_answer(GOLD)
    assert env.get_reward() is None


def test_prerun_gold_on_a_hf_dataset_and_reward_funcs(proc):
    import datasets

    ds = datasets.Dataset.from_list(rows(GOLD, BAD, GOLD))
    cache = GoldCache(proc)
    rep = prerun_gold(ds, cache, on_failure="drop")
    assert isinstance(rep.dataset, datasets.Dataset) and len(rep.dataset) == 2
    assert rep.elapsed_s >= 0 and rep.on_failure == "drop"
    with pytest.raises(GoldQueryError, match="1 gold queries cannot run"):
        make_reward_funcs("binary", proc, dataset=ds)
    with pytest.raises(ValueError, match="cannot drop"):
        make_reward_funcs("binary", proc, dataset=ds, on_gold_failure="drop")
    (f,) = make_reward_funcs("binary", proc, dataset=ds, on_gold_failure="flag", gold_cache=cache)
    sol = f"<solution>{GOLD}</solution>"
    assert f([sol, sol], ["shop", "shop"], [GOLD, BAD]) == [1.0, None]
    with pytest.raises(ValueError, match="on_failure must be"):
        prerun_gold(ds, cache, on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lack db_id or gold_sql"):
        prerun_gold([{"db_id": "shop"}], cache)


def test_prerun_raises_for_infrastructure_failures(proc):
    from agentic_sql.errors import DatabaseNotFoundError

    cache = GoldCache(proc)
    with pytest.raises(DatabaseNotFoundError, match="nope"):
        prerun_gold([{"db_id": "nope", "gold_sql": GOLD}], cache, on_failure="drop")


def test_gold_query_error_pickles():
    import pickle

    from agentic_sql.rewards import GoldFailure

    e = GoldQueryError([GoldFailure("shop", BAD, "no such column", "sqlite", rows=(3,))])
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.failures[0].rows == (3,)
    assert isinstance(e, ValueError)
