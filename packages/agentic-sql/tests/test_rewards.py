"""Rewards: CSMR properties (spec §2.2), the baselines, ATR as a TRL reward, completion parsing."""

from __future__ import annotations

import random

import pytest

from agentic_sql.atr import ATRConfig, trajectory_reward
from agentic_sql.compare import column_set_score, ex_match
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.rewards import (
    REWARD_KINDS,
    GoldCache,
    arctic_reward,
    atr_reward,
    binary_ex_reward,
    csmr_final_reward,
    make_reward_funcs,
    parse_completion,
)

GOLD = "SELECT name, city FROM customers WHERE age > 30"


@pytest.fixture(scope="module")
def shop_root(tmp_path_factory, make_shop_db):
    customers = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "oslo", 41)]
    customers += [(4, "dee", "paris", 52), (5, "eve", "rome", 19)]
    orders = """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL);
        INSERT INTO orders VALUES (1,1,10.5),(2,1,3.0),(3,3,7.25),(4,4,1.0);
    """
    return make_shop_db(tmp_path_factory.mktemp("dbs"), customers, extra_sql=orders)


@pytest.fixture(scope="module")
def ex(shop_root):
    with SQLiteExecutor(shop_root, timeout_s=5.0, isolation="thread") as e:
        yield e


def run(ex, sql):
    return ex.execute("shop", sql)


def sol(sql, explore=()):
    body = "".join(f"<sql>{q}</sql>\n<observation>\nrows\n</observation>\n" for q in explore)
    return f"{body}<think>done</think><solution>{sql}</solution>"


# --------------------------------------------------------------------------- CSMR properties


PREDS = [
    GOLD,
    "SELECT city, name FROM customers WHERE age > 30",
    "SELECT name FROM customers WHERE age > 30",
    "SELECT name, city, age FROM customers WHERE age > 30",
    "SELECT name, city FROM customers",
    "SELECT name, city FROM customers WHERE age > 100",
    "SELECT id FROM orders",
    "SELECT nope FROM customers",
    "SELECT name, city FROM customers WHERE age > 30 ORDER BY name DESC",
]


def test_csmr_in_unit_interval_and_one_iff_ex(ex):
    gold = run(ex, GOLD)
    for q in PREDS:
        p = run(ex, q)
        s = column_set_score(p, gold)
        assert 0.0 <= s <= 1.0
        assert (s == 1.0) == ex_match(p, gold), q


def test_csmr_row_order_never_matters(ex):
    gold = run(ex, GOLD)
    for order in ("name", "name DESC", "city, name", "age"):
        p = run(ex, f"{GOLD} ORDER BY {order}")
        assert column_set_score(p, gold) == 1.0
        partial = run(ex, f"SELECT name FROM customers WHERE age > 30 ORDER BY {order}")
        assert column_set_score(partial, gold) == pytest.approx(
            column_set_score(run(ex, "SELECT name FROM customers WHERE age > 30"), gold)
        )


def test_csmr_column_permutation_does_not_change_score(ex):
    gold = run(ex, GOLD)
    a = column_set_score(run(ex, "SELECT name, city, age FROM customers WHERE age > 30"), gold)
    b = column_set_score(run(ex, "SELECT age, city, name FROM customers WHERE age > 30"), gold)
    c = column_set_score(run(ex, "SELECT city, age, name FROM customers WHERE age > 30"), gold)
    assert a == pytest.approx(b) == pytest.approx(c)
    # the gold columns in another order are not an EX match but a capped full column match
    swapped = run(ex, "SELECT city, name FROM customers WHERE age > 30")
    assert not ex_match(swapped, gold)
    assert column_set_score(swapped, gold) == pytest.approx(0.9)


def test_csmr_extra_column_lowers_precision_missing_column_lowers_recall(ex):
    gold = run(ex, GOLD)
    extra = column_set_score(run(ex, "SELECT name, city, age FROM customers WHERE age > 30"), gold)
    missing = column_set_score(run(ex, "SELECT name FROM customers WHERE age > 30"), gold)
    assert extra == pytest.approx(0.8)  # P = 2/3, R = 1
    assert missing == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert 0 < missing < 0.9 and 0 < extra < 0.9


def test_csmr_errors_and_empty_results_score_zero(ex):
    gold = run(ex, GOLD)
    assert column_set_score(run(ex, "SELECT nope FROM customers"), gold) == 0.0
    assert (
        column_set_score(run(ex, "SELECT name, city FROM customers WHERE age > 100"), gold) == 0.0
    )


def test_csmr_cap_partial_is_configurable(ex):
    gold = run(ex, GOLD)
    swapped = run(ex, "SELECT city, name FROM customers WHERE age > 30")
    assert column_set_score(swapped, gold, cap_partial=0.5) == pytest.approx(0.5)


# --------------------------------------------------------------------------- baselines


def test_binary_ex_reward(ex):
    comps = [
        sol(GOLD),
        sol(f"{GOLD} ORDER BY name"),  # BIRD EX ignores row order
        sol("SELECT name FROM customers"),
        sol("SELECT nope FROM x"),
        "no tags at all",
        "",
    ]
    r = binary_ex_reward(comps, ["shop"] * 6, [GOLD] * 6, executor=ex)
    assert r == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_arctic_reward_levels(ex):
    comps = [sol(GOLD), sol("SELECT name FROM customers"), sol("SELECT nope FROM x"), "<sql>x"]
    r = arctic_reward(comps, ["shop"] * 4, [GOLD] * 4, executor=ex)
    assert r == [1.0, pytest.approx(0.1), 0.0, 0.0]


def test_csmr_final_reward_is_dense_and_final_only(ex):
    comps = [
        sol(GOLD),
        sol("SELECT name FROM customers WHERE age > 30"),
        sol(
            "SELECT name FROM customers WHERE age > 30", explore=[GOLD]
        ),  # good exploration ignored
        sol("SELECT nope FROM x"),
        "<solution>SELECT 1",
    ]
    r = csmr_final_reward(comps, ["shop"] * 5, [GOLD] * 5, executor=ex)
    assert r[0] == 1.0
    assert r[1] == pytest.approx(2 / 3) and r[2] == pytest.approx(2 / 3)
    assert r[3] == 0.0 and r[4] == 0.0
    # denser than binary: partial answers are told apart
    b = binary_ex_reward(comps, ["shop"] * 5, [GOLD] * 5, executor=ex)
    assert b[1] == b[3] == 0.0 and r[1] > r[3]


def test_invalid_gold_gives_none_not_zero(ex, caplog):
    bad_gold = "SELECT missing_col FROM customers"
    for f in (binary_ex_reward, arctic_reward, csmr_final_reward, atr_reward):
        assert f([sol(GOLD)], ["shop"], [bad_gold], executor=ex) == [None]
    assert "gold SQL" in caplog.text
    cache = GoldCache(ex)
    assert cache.get("shop", bad_gold) is None and cache.n_invalid == 1
    assert cache.get("shop", bad_gold) is None and cache.n_invalid == 1  # cached


# --------------------------------------------------------------------------- ATR as a reward


def test_atr_reward_executes_every_turn_without_extras(ex):
    cfg = ATRConfig()
    comps = [
        sol(GOLD),
        sol(GOLD, explore=["SELECT name FROM customers WHERE age > 30"]),
        sol(GOLD, explore=["SELECT nope FROM x"]),
        sol("SELECT name FROM customers WHERE age > 30", explore=[GOLD]),  # regression
        "<sql>SELECT name FROM customers</sql>",  # no answer
    ]
    r = atr_reward(comps, ["shop"] * 5, [GOLD] * 5, executor=ex)
    assert r[0] == pytest.approx(trajectory_reward([1.0], final_ex=True, cfg=cfg))
    assert r[1] == pytest.approx(trajectory_reward([2 / 3, 1.0], final_ex=True, cfg=cfg))
    assert r[2] == pytest.approx(
        trajectory_reward([0.0, 1.0], [True, False], final_ex=True, cfg=cfg)
    )
    assert r[0] > r[1] > r[2]  # immediate success beats a detour; an error costs more
    assert r[3] < r[1]  # regressing from an exact match
    assert r[4] < 0  # format penalty
    assert r[3] == pytest.approx(trajectory_reward([1.0, 2 / 3], final_ex=False, cfg=cfg))


class CountingExecutor:
    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def execute(self, db_id, sql):
        self.calls += 1
        return self.inner.execute(db_id, sql)


def test_atr_reward_reads_rollout_extras_without_executing(ex):
    spy = CountingExecutor(ex)
    (f,) = make_reward_funcs("atr", spy)
    r = f(
        ["ignored", "ignored"],
        ["shop"] * 2,
        [GOLD] * 2,
        turn_scores=[[0.5, 1.0], [0.9, 0.2]],
        turn_errors=[[False, False], [False, False]],
        final_sql=["q", None],
        final_ex=[True, False],
        format_ok=[True, False],
    )
    assert spy.calls == 0
    cfg = ATRConfig()
    assert r[0] == pytest.approx(trajectory_reward([0.5, 1.0], final_ex=True, cfg=cfg))
    # no final answer: the error state, below every well-formed episode
    assert r[1] == pytest.approx(
        trajectory_reward([0.9, 0.2], final_ex=False, format_ok=False, cfg=cfg)
    )
    assert r[1] < trajectory_reward([0.0], [True], final_ex=False, cfg=cfg)


def test_atr_reward_reads_environments(ex):
    from agentic_sql.env import SQLEnvironment

    env = SQLEnvironment(ex)
    env.reset(db_id="shop", gold_sql=GOLD)
    env.execute_sql("SELECT name FROM customers WHERE age > 30")
    env.submit_answer(GOLD)
    r = atr_reward([[]], ["shop"], [GOLD], environments=[env])
    assert r == [pytest.approx(env.get_reward())]
    assert r[0] == pytest.approx(trajectory_reward([2 / 3, 1.0], final_ex=True))
    assert binary_ex_reward([[]], ["shop"], [GOLD], environments=[env]) == [1.0]


def test_sandbagging_completion_does_not_beat_immediate_success(ex):
    immediate = sol(GOLD)
    sandbag = [
        sol(GOLD, explore=["SELECT nope FROM x"]),
        sol(GOLD, explore=["SELECT id FROM orders"]),
        sol(
            GOLD,
            explore=["SELECT name FROM customers", "SELECT name FROM customers WHERE age > 30"],
        ),
    ]
    r = atr_reward([immediate, *sandbag], ["shop"] * 4, [GOLD] * 4, executor=ex)
    assert all(r[0] > x for x in r[1:])


def test_make_reward_funcs_names_and_kinds(ex):
    names = {k: make_reward_funcs(k, ex)[0].__name__ for k in REWARD_KINDS}
    assert names["binary"] == "binary_ex" and names["atr"] == names["atr+csmr"] == "atr_csmr"
    with pytest.raises(ValueError, match="unknown reward kind"):
        make_reward_funcs("dense", ex)


def test_missing_executor_and_columns_raise_clear_errors(ex):
    with pytest.raises(ValueError, match="no executor"):
        binary_ex_reward([sol(GOLD)], ["shop"], [GOLD])
    with pytest.raises(ValueError, match="gold_sql"):
        binary_ex_reward([sol(GOLD)], ["shop"], None, executor=ex)


def test_db_root_column_builds_an_executor(shop_root):
    (f,) = make_reward_funcs("binary")
    assert f([sol(GOLD)], ["shop"], [GOLD], db_root=[str(shop_root)]) == [1.0]


def test_log_metric_receives_per_turn_statistics(ex):
    logged = {}
    atr_reward(
        [sol(GOLD, explore=["SELECT name FROM customers WHERE age > 30"])],
        ["shop"],
        [GOLD],
        executor=ex,
        log_metric=lambda k, v: logged.__setitem__(k, v),
    )
    assert logged["sql/turns_mean"] == 2.0
    assert logged["sql/turn_csmr_mean"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert logged["sql/final_ex"] == 1.0


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, ok, final, n_sql",
    [
        (
            "<sql>SELECT 1</sql><observation>1</observation><solution>SELECT 2</solution>",
            True,
            "SELECT 2",
            1,
        ),
        ("<think>x</think><solution> SELECT 2 </solution>", True, "SELECT 2", 0),
        ("", False, None, 0),
        ("SELECT 1", False, None, 0),
        ("<sql>SELECT 1</sql>", False, None, 1),
        ("<solution>SELECT 1</solution><solution>SELECT 2</solution>", False, "SELECT 1", 0),
        ("<solution>SELECT <sql>1</sql></solution>", False, None, 1),
        ("<solution><solution>SELECT 1</solution></solution>", False, "SELECT 1", 0),
        ("<solution>SELECT 1", False, None, 0),
        ("SELECT 1</solution>", False, None, 0),
        ("<solution></solution>", False, "", 0),
        ("<solution>SELECT 1</solution><sql>SELECT 2</sql>", False, "SELECT 1", 1),
        (
            "<observation><solution>SELECT 9</solution></observation><solution>SELECT 1</solution>",
            True,
            "SELECT 1",
            0,
        ),
    ],
)
def test_parse_completion_text(text, ok, final, n_sql):
    p = parse_completion(text)
    assert p.format_ok is ok, p.reason
    assert p.final_sql == final
    assert len(p.sql_turns) == n_sql


def test_parse_completion_tool_messages():
    msgs = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "execute_sql", "arguments": {"query": "SELECT 1"}},
                }
            ],
        },
        {"role": "tool", "name": "execute_sql", "content": "1"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "submit_answer", "arguments": {"query": "SELECT 2"}},
                }
            ],
        },
    ]
    p = parse_completion(msgs)
    assert p.format_ok and p.sql_turns == ["SELECT 1"] and p.final_sql == "SELECT 2"
    assert not parse_completion(msgs[:2]).format_ok
    assert (
        parse_completion(
            [{"role": "assistant", "content": "<solution>SELECT 3</solution>"}]
        ).final_sql
        == "SELECT 3"
    )


def test_parse_completion_never_crashes_on_garbage():
    rng = random.Random(0)
    pieces = [
        "<sql>",
        "</sql>",
        "<solution>",
        "</solution>",
        "<observation>",
        "</observation>",
        "SELECT 1",
        " ",
        "<",
        ">",
        "/",
        "\x00",
        "é",
        "</",
    ]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        p = parse_completion(text)
        assert isinstance(p.format_ok, bool)
    assert parse_completion(None).format_ok is False


# --------------------------------------------------------------------------- review fixes


@pytest.fixture(scope="module")
def big_root(tmp_path_factory, counting_db):
    """``big/big.sqlite``: ``t(x)`` with 20,000 rows, twice the executor's default row cap."""
    return counting_db(tmp_path_factory.mktemp("big"), 20_000)


def test_truncated_results_are_not_comparable():
    from agentic_sql.executor import ExecResult

    full = ExecResult(ok=True, columns=["x"], rows=[(1,), (2,)])
    cut = ExecResult(ok=True, columns=["x"], rows=[(1,), (2,)], truncated=True)
    assert ex_match(full, full) and column_set_score(full, full) == 1.0
    for p, g in ((cut, full), (full, cut), (cut, cut)):
        assert not ex_match(p, g)
        assert column_set_score(p, g) == 0.0


def test_gold_is_executed_uncapped_and_capped_predictions_are_rerun(big_root):
    gold = "SELECT x FROM t"
    with SQLiteExecutor(big_root, isolation="thread") as big:  # default max_rows = 10,000
        assert big.max_rows == 10_000 and big.execute("big", gold).truncated
        comps = [
            sol("SELECT x FROM t WHERE x < 10000"),  # the first 10,000 rows only: wrong
            sol(gold),  # right, although its capped result is truncated
            sol("SELECT x FROM t ORDER BY x DESC"),  # right; its first 10,000 rows differ
        ]
        n = len(comps)
        assert binary_ex_reward(comps, ["big"] * n, [gold] * n, executor=big) == [0.0, 1.0, 1.0]
        csmr = csmr_final_reward(comps, ["big"] * n, [gold] * n, executor=big)
        assert csmr[0] < 1.0 and csmr[1:] == [1.0, 1.0]
        cache = GoldCache(big)
        res = cache.get("big", gold)
        assert len(res.rows) == 20_000 and not res.truncated


def test_binary_and_arctic_need_a_well_formed_answer(ex):
    from agentic_sql.rewards import Episode, episode_reward

    twice = f"<solution>{GOLD}</solution><solution>SELECT 1</solution>"
    trailing_sql = f"<solution>{GOLD}</solution><sql>SELECT 1</sql>"
    for comp in (twice, trailing_sql):
        assert binary_ex_reward([comp], ["shop"], [GOLD], executor=ex) == [0.0]
        assert arctic_reward([comp], ["shop"], [GOLD], executor=ex) == [0.0]
    bad = Episode(final_sql=GOLD, final_ok=True, final_ex=True, final_score=1.0, format_ok=False)
    assert episode_reward("binary", bad) == 0.0 and episode_reward("arctic", bad) == 0.0
    good = Episode(final_sql=GOLD, final_ok=True, final_ex=True, final_score=1.0, format_ok=True)
    assert episode_reward("binary", good) == 1.0 and episode_reward("arctic", good) == 1.0
    # the rollout_func path: format_ok travels as an extra field
    extras = dict(turn_scores=[[1.0]], final_sql=[GOLD], final_ex=[True], final_ok=[True])
    assert binary_ex_reward(["x"], ["shop"], [GOLD], format_ok=[False], **extras) == [0.0]
    assert arctic_reward(["x"], ["shop"], [GOLD], format_ok=[False], **extras) == [0.0]


def test_module_level_rewards_key_executors_by_db_root(tmp_path, make_shop_db):
    import sqlite3

    from agentic_sql.errors import DatabaseNotFoundError
    from agentic_sql.rewards import close_shared_executors, shared_executor

    a = make_shop_db(tmp_path / "a")
    b = tmp_path / "b"
    (b / "school").mkdir(parents=True)
    con = sqlite3.connect(b / "school" / "school.sqlite")
    con.executescript("CREATE TABLE s (n TEXT); INSERT INTO s VALUES ('x'), ('y');")
    con.close()
    shop_gold, school_gold = "SELECT name FROM customers", "SELECT n FROM s"
    for f in (binary_ex_reward, arctic_reward, csmr_final_reward):
        assert f([sol(shop_gold)], ["shop"], [shop_gold], db_root=[str(a)]) == [1.0]
        # a later dataset on another folder gets its own executor (was: None rewards)
        assert f([sol(school_gold)], ["school"], [school_gold], db_root=[str(b)]) == [1.0]
    # one batch may mix folders: each row uses its own
    r = binary_ex_reward(
        [sol(shop_gold), sol(school_gold)],
        ["shop", "school"],
        [shop_gold, school_gold],
        db_root=[str(a), str(b)],
    )
    assert r == [1.0, 1.0]
    ex_a, _ = shared_executor(a)
    assert shared_executor(str(a))[0] is ex_a and shared_executor(b)[0] is not ex_a
    # the policy's SQL runs in worker processes (hard timeout), started with `python -m`, so a
    # plain script still works (tests/test_plain_script.py)
    assert ex_a.isolation == "process"
    # a database missing from the folder fails fast instead of a None reward
    with pytest.raises(DatabaseNotFoundError, match="school"):
        binary_ex_reward([sol(school_gold)], ["school"], [school_gold], db_root=[str(a)])
    with pytest.raises(DatabaseNotFoundError, match="database folder not found"):
        binary_ex_reward([sol(GOLD)], ["shop"], [GOLD], db_root=[str(tmp_path / "nope")])
    close_shared_executors()
    assert ex_a._closed
    # used again after closing: a fresh executor
    assert binary_ex_reward([sol(shop_gold)], ["shop"], [shop_gold], db_root=[str(a)]) == [1.0]
    assert shared_executor(a)[0] is not ex_a
    close_shared_executors()


class ScriptedGoldExecutor:
    """Returns scripted results for gold queries and records the per-call overrides."""

    def __init__(self, inner, results):
        self.inner, self.results, self.calls = inner, list(results), []
        self.timeout_s = inner.timeout_s

    def db_path(self, db_id):
        return self.inner.db_path(db_id)

    def execute(self, db_id, sql, *, timeout_s=None, max_rows="default"):
        self.calls.append({"timeout_s": timeout_s, "max_rows": max_rows})
        if self.results:
            return self.results.pop(0)
        return self.inner.execute(db_id, sql, timeout_s=timeout_s, max_rows=max_rows)


def test_gold_cache_caches_timeouts_and_raises_on_crashes(ex):
    from agentic_sql.errors import SandboxWorkerError
    from agentic_sql.executor import ExecResult
    from agentic_sql.rewards import GOLD_TIMEOUT_FACTOR

    timeout = ExecResult(ok=False, error="timeout", timed_out=True, error_kind="timeout")
    crash = ExecResult(ok=False, error="worker died", error_kind="crash")
    # a gold timeout is cached: a slow gold query costs its timeout once, not at every reset
    spy = ScriptedGoldExecutor(ex, [timeout])
    cache = GoldCache(spy)
    assert cache.get("shop", GOLD) is None and cache.get("shop", GOLD) is None
    assert len(spy.calls) == 1 and cache.n_invalid == 1
    assert [f.timed_out for f in cache.failures()] == [True]
    # retry_timeouts=True: the old behaviour (executed again on the next get)
    spy = ScriptedGoldExecutor(ex, [timeout, crash])
    cache = GoldCache(spy, retry_timeouts=True)
    assert cache.get("shop", GOLD) is None and cache.n_invalid == 1
    # a crashed sandbox is an infrastructure failure: it raises, never a None reward
    with pytest.raises(SandboxWorkerError, match="worker died"):
        cache.get("shop", GOLD)
    ok = cache.get("shop", GOLD)  # executed again, then cached
    assert ok is not None and ok.ok and len(spy.calls) == 3
    assert cache.get("shop", GOLD) is ok and len(spy.calls) == 3
    # gold runs every row with GOLD_TIMEOUT_FACTOR x the policy timeout
    assert spy.calls[0] == {"timeout_s": GOLD_TIMEOUT_FACTOR * ex.timeout_s, "max_rows": None}
    assert GoldCache(spy, timeout_s=60.0).timeout_s == 60.0
    # an SQL error is deterministic: cached
    bad = ScriptedGoldExecutor(ex, [])
    cache = GoldCache(bad)
    assert cache.get("shop", "SELECT nope FROM customers") is None
    assert cache.get("shop", "SELECT nope FROM customers") is None and len(bad.calls) == 1


def test_unscorable_rows_are_counted_in_the_logged_metrics(ex):
    for f in (binary_ex_reward, arctic_reward, csmr_final_reward, atr_reward):
        logged = {}
        r = f(
            [sol(GOLD)] * 3,
            ["shop"] * 3,
            [GOLD, "SELECT missing_col FROM customers", "SELECT missing_col FROM customers"],
            executor=ex,
            log_metric=lambda k, v, logged=logged: logged.__setitem__(k, v),
        )
        assert r == [1.0 if f is not atr_reward else r[0], None, None]
        assert logged["sql/unscorable"] == 2.0
