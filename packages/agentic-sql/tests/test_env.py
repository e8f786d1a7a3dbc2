"""SQLEnvironment: the TRL environment_factory contract, per-turn CSMR, state reset, limits, bad input."""

from __future__ import annotations

import inspect

import pytest

from agentic_sql.atr import ATRConfig, trajectory_reward
from agentic_sql.env import (
    EPISODE_FINISHED,
    NO_TURNS_LEFT,
    SQLEnvironment,
    make_environment_factory,
)
from agentic_sql.errors import DatabaseNotFoundError
from agentic_sql.executor import SQLiteExecutor

GOLD = "SELECT name, city FROM customers WHERE age > 30"
PARTIAL = "SELECT name FROM customers WHERE age > 30"


@pytest.fixture(scope="module")
def root(tmp_path_factory, make_shop_db):
    filler = [(i, f"p{i}", "x" * 300, 20) for i in range(4, 200)]
    customers = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "oslo", 41)]
    return make_shop_db(tmp_path_factory.mktemp("dbs"), customers + filler)


@pytest.fixture(scope="module")
def executor(root):
    with SQLiteExecutor(root, timeout_s=2.0, isolation="thread") as ex:
        yield ex


@pytest.fixture()
def env(executor):
    e = SQLEnvironment(executor, max_turns=3)
    e.reset(db_id="shop", gold_sql=GOLD, prompt=[{"role": "user", "content": "q"}], extra=1)
    return e


def trl_tools(env_cls):
    """The methods TRL's GRPOTrainer exposes as tools (same rule as trl 1.16)."""
    return sorted(
        name
        for name, _ in inspect.getmembers(env_cls, predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    )


def test_only_the_two_tools_are_public_and_their_schemas_parse():
    from transformers.utils import get_json_schema

    assert trl_tools(SQLEnvironment) == ["execute_sql", "submit_answer"]
    for name in ("execute_sql", "submit_answer"):
        schema = get_json_schema(getattr(SQLEnvironment, name))
        assert schema["function"]["name"] == name
        assert schema["function"]["parameters"]["required"] == ["query"]
        assert "query" in schema["function"]["parameters"]["properties"]


def test_turns_are_scored_with_csmr_and_reward_is_atr(env):
    obs = env.execute_sql(PARTIAL)
    assert obs.splitlines()[0] == "name" and "ann" in obs and "(2 turns left.)" in obs
    assert env.turn_scores == [pytest.approx(2 / 3)] and env.turn_errors == [False]
    msg = env.submit_answer(GOLD)
    assert "finished" in msg and env.done and env.final_ex and env.final_sql == GOLD
    assert env.turn_scores == [pytest.approx(2 / 3), 1.0] and env.n_turns == 2
    assert env.get_reward() == pytest.approx(trajectory_reward([2 / 3, 1.0], final_ex=True))


def test_tool_calls_after_submission_do_nothing(env):
    env.submit_answer(GOLD)
    assert env.execute_sql(PARTIAL) == EPISODE_FINISHED
    assert env.submit_answer(PARTIAL) == EPISODE_FINISHED
    assert env.turn_scores == [1.0] and env.final_sql == GOLD


def test_turn_budget(env):
    env.execute_sql(PARTIAL)
    assert "1 turn left" in env.execute_sql(PARTIAL)
    last = env.execute_sql(PARTIAL)
    assert NO_TURNS_LEFT in last and env.done
    assert env.execute_sql(GOLD) == EPISODE_FINISHED and env.n_turns == 3
    assert env.final_sql is None and not env.format_ok
    # a missing answer is a format failure, even after good exploration
    assert env.get_reward() == pytest.approx(
        trajectory_reward([2 / 3] * 3, final_ex=False, format_ok=False)
    )


def test_fallback_last_sql(executor):
    e = SQLEnvironment(executor, max_turns=2, fallback_last_sql=True, reward_kind="binary")
    e.reset(db_id="shop", gold_sql=GOLD)
    e.execute_sql(GOLD)
    assert e.get_reward() == 1.0
    # reset clears the fallback's history: the next episode is scored on its own queries
    e.reset(db_id="shop", gold_sql=GOLD)
    assert e.sql_history == [] and e.get_reward() == 0.0  # nothing executed yet
    obs = e.execute_sql(PARTIAL)
    assert obs.splitlines()[0] == "name" and "(1 turn left" in obs
    assert e.sql_history == [PARTIAL] and e.n_turns == 1
    assert e.get_reward() == 0.0  # the last query (PARTIAL) is not an EX match
    e2 = SQLEnvironment(executor, max_turns=2, reward_kind="binary")
    e2.reset(db_id="shop", gold_sql=GOLD)
    e2.execute_sql(GOLD)
    assert e2.get_reward() == 0.0  # default: not auto-submitted


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE customers",
        "INSERT INTO customers VALUES (9,'z','z',1)",
        "PRAGMA table_info(customers)",
        "ATTACH DATABASE 'x.db' AS x",
        "SELECT 1; SELECT 2",
        "SELECT load_extension('x')",
        "SELEC broken",
        "",
    ],
)
def test_unsafe_or_bad_sql_becomes_an_error_observation(env, sql):
    obs = env.execute_sql(sql)
    assert obs.startswith("Error")
    assert env.turn_errors == [True] and env.turn_scores == [0.0]


def test_huge_observation_is_truncated(executor):
    e = SQLEnvironment(executor, max_obs_rows=5, max_cell_chars=20)
    e.reset(db_id="shop", gold_sql=GOLD)
    obs = e.execute_sql("SELECT * FROM customers")
    assert "more rows" in obs
    assert max(len(line) for line in obs.splitlines()) < 120
    assert len(obs.splitlines()) <= 5 + 3


def test_reset_clears_all_state(env):
    env.execute_sql(PARTIAL)
    env.submit_answer(PARTIAL)
    assert env.turn_scores and env.done
    env.reset(db_id="shop", gold_sql="SELECT name FROM customers WHERE age < 30")
    assert env.turn_scores == [] and env.turn_errors == [] and env.sql_history == []
    assert env.final_sql is None and not env.final_ex and not env.done and env.n_turns == 0
    assert env.format_errors == []
    env.submit_answer("SELECT name FROM customers WHERE age < 30")
    assert env.final_ex and env.turn_scores == [1.0]


@pytest.mark.parametrize("kind, expected", [("binary", 0.0), ("arctic", 0.1), ("csmr", 2 / 3)])
def test_baseline_reward_kinds(executor, kind, expected):
    e = SQLEnvironment(executor, reward_kind=kind)
    e.reset(db_id="shop", gold_sql=GOLD)
    e.execute_sql(GOLD)  # a perfect exploration does not count for final-only rewards
    e.submit_answer(PARTIAL)
    assert e.get_reward() == pytest.approx(expected)


def test_atr_config_is_used(executor):
    cfg = ATRConfig(lam=0.0, w_ex=0.0, turn_cost=0.0)
    e = SQLEnvironment(executor, atr=cfg)
    e.reset(db_id="shop", gold_sql=GOLD)
    e.execute_sql(GOLD)
    e.submit_answer(PARTIAL)
    assert e.get_reward() == pytest.approx(2 / 3)


def test_invalid_gold_gives_none(executor):
    e = SQLEnvironment(executor)
    e.reset(db_id="shop", gold_sql="SELECT nope FROM customers")
    assert not e.gold_valid
    e.submit_answer(GOLD)
    assert e.get_reward() is None


def test_bad_rows_fail_fast(executor):
    e = SQLEnvironment(executor)
    with pytest.raises(ValueError, match=r"lacks \['gold_sql'\]"):
        e.reset(db_id="shop", prompt="x")
    with pytest.raises(ValueError, match=r"db_id"):
        e.reset(gold_sql=GOLD)
    with pytest.raises(DatabaseNotFoundError, match="nowhere"):
        e.reset(db_id="nowhere", gold_sql=GOLD)
    # present but empty (e.g. a Spider 2.0 entry without gold): say so, not "lacks"
    with pytest.raises(ValueError, match=r"empty gold_sql \(db_id 'shop'\)") as err:
        e.reset(db_id="shop", gold_sql="")
    assert "lacks" not in str(err.value)
    with pytest.raises(ValueError, match="empty gold_sql"):
        e.reset(db_id="shop", gold_sql="   ")
    with pytest.raises(ValueError, match="empty db_id"):
        e.reset(db_id="", gold_sql=GOLD)
    fresh = SQLEnvironment(executor)
    with pytest.raises(RuntimeError, match="reset"):
        fresh.execute_sql("SELECT 1")


def test_bad_constructor_arguments(executor):
    with pytest.raises(ValueError, match="max_turns"):
        SQLEnvironment(executor, max_turns=0)
    with pytest.raises(ValueError, match="unknown reward kind"):
        SQLEnvironment(executor, reward_kind="dense")
    with pytest.raises(ValueError, match="unknown reward kind"):
        make_environment_factory(executor=executor, reward_kind="nope")


def test_factory_shares_executor_and_gold_cache(root):
    factory = make_environment_factory(root, isolation="thread", max_turns=2, reward_kind="binary")
    try:
        a, b = factory(), factory()
        assert a is not b and a.executor is b.executor is factory.executor
        assert a.gold_cache is b.gold_cache and a.max_turns == 2 and a.reward_kind == "binary"
        a.reset(db_id="shop", gold_sql=GOLD)
        b.reset(db_id="shop", gold_sql=GOLD)
        assert len(factory.gold_cache._cache) == 1
    finally:
        factory.close()
    with pytest.raises(ValueError, match="db_root or executor"):
        make_environment_factory()


def test_process_isolation_end_to_end(root):
    factory = make_environment_factory(root, isolation="process", max_workers=1, timeout_s=2.0)
    try:
        e = factory()
        e.reset(db_id="shop", gold_sql=GOLD)
        e.execute_sql(PARTIAL)
        e.submit_answer(GOLD)
        assert e.turn_scores == [pytest.approx(2 / 3), 1.0] and e.final_ex
    finally:
        factory.close()


def test_truncated_answers_are_scored_on_every_row(tmp_path, counting_db):
    """Gold runs uncapped and a capped answer is re-run: a prefix of the gold rows is not a match."""
    counting_db(tmp_path, 300)
    with SQLiteExecutor(tmp_path, isolation="thread", max_rows=100) as ex:
        e = SQLEnvironment(ex, reward_kind="binary")
        e.reset(db_id="big", gold_sql="SELECT x FROM t")
        assert len(e._gold.rows) == 300 and not e._gold.truncated
        obs = e.execute_sql("SELECT x FROM t WHERE x < 100")
        assert e.turn_scores == [0.0] and e.turn_errors == [False] and "cut at" not in obs
        obs = e.execute_sql("SELECT x FROM t")  # the agent sees 50 of the first 100 rows ...
        assert "the result was cut at 100 rows" in obs
        assert e.turn_scores[-1] == 1.0  # ... and is scored on all 300
        e.submit_answer("SELECT x FROM t WHERE x < 100")
        assert not e.final_ex and e.get_reward() == 0.0
