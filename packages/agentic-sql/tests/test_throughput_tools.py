"""Tool calls off the trainer's critical path: async environment tools (TRL gathers the calls of one
message) and one ``execute_many`` per turn in the text rollout (issue 21, §4)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from agentic_sql.env import AsyncSQLEnvironment, SQLEnvironment, make_environment_factory
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.rollout import run_text_episodes
from papercore.generation import Completion

GOLD = "SELECT name, city FROM customers WHERE age > 30"
PARTIAL = "SELECT name FROM customers WHERE age > 30"


class Recorder:
    """A duck-typed executor around a real one recording the top-level calls (optionally making
    every policy ``execute`` wait at a barrier: only concurrent callers get through)."""

    def __init__(self, inner, barrier: threading.Barrier | None = None):
        self.inner, self.barrier = inner, barrier
        self.timeout_s, self.max_rows = inner.timeout_s, inner.max_rows
        self.execute_calls: list[str] = []
        self.many_calls: list[list[tuple[str, str]]] = []

    def db_path(self, db_id):
        return self.inner.db_path(db_id)

    def execute(self, db_id, sql, **kw):
        if not kw:  # a policy query (gold queries come with timeout_s / max_rows)
            self.execute_calls.append(sql)
            if self.barrier is not None:
                self.barrier.wait()
        return self.inner.execute(db_id, sql, **kw)

    def execute_many(self, items, **kw):
        self.many_calls.append(list(items))
        return self.inner.execute_many(items, **kw)

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def shop_root(tmp_path_factory, make_shop_db):
    return make_shop_db(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def thread_ex(shop_root):
    with SQLiteExecutor(shop_root, isolation="thread", max_workers=4) as ex:
        yield ex


def test_async_tools_are_coroutines_trl_recognises(thread_ex):
    from transformers.utils import get_json_schema

    env = make_environment_factory(executor=thread_ex, async_tools=True)()
    assert isinstance(env, AsyncSQLEnvironment)
    # TRL 1.16 sorts environment methods into sync / async tool dicts by iscoroutinefunction
    tools = [
        getattr(env, n)
        for n, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if n not in ("reset", "get_reward") and not n.startswith("_")
    ]
    assert sorted(t.__name__ for t in tools) == ["execute_sql", "submit_answer"]
    assert all(inspect.iscoroutinefunction(t) for t in tools)
    schemas = {s["function"]["name"]: s for s in map(get_json_schema, tools)}
    assert schemas["execute_sql"]["function"]["parameters"]["required"] == ["query"]
    with pytest.raises(ValueError, match="AsyncSQLEnvironment"):
        make_environment_factory(executor=thread_ex, async_tools=True, env_cls=SQLEnvironment)


def test_async_tool_calls_run_concurrently_and_match_the_sync_tools(thread_ex):
    # both queries must be in flight at once to pass the barrier (sequential calls would time out)
    rec = Recorder(thread_ex, threading.Barrier(2, timeout=10))
    f = make_environment_factory(executor=rec, async_tools=True, max_turns=3)
    envs = [f(), f()]
    for e in envs:
        e.reset(db_id="shop", gold_sql=GOLD)

    async def one_message():  # what TRL does with the async calls of one assistant message
        return await asyncio.gather(envs[0].execute_sql(PARTIAL), envs[1].submit_answer(GOLD))

    obs, done = asyncio.run(one_message())
    assert len(rec.execute_calls) == 2
    sync = make_environment_factory(executor=thread_ex, max_turns=3)()
    sync.reset(db_id="shop", gold_sql=GOLD)
    assert obs == sync.execute_sql(PARTIAL)
    assert done.startswith("Answer submitted")
    assert envs[0].turn_scores == sync.turn_scores and envs[1].final_ex
    assert envs[0].final_sql is None and envs[1].get_reward() > envs[0].get_reward()


class ScriptedBackend:
    """Replays fixed turns per episode (keyed by the question in the prompt)."""

    def __init__(self, tok, scripts):
        self.tok, self.scripts, self.turn = tok, scripts, {}

    def generate(self, prompts, config):
        out = []
        for p in prompts:
            key = next(k for k in self.scripts if f"Q:{k}|" in p)
            i = self.turn[key] = self.turn.get(key, -1) + 1
            text = self.scripts[key][i]
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            out.append([Completion(text=text, token_ids=ids, logprobs=[-0.5] * len(ids))])
        return out


def test_text_rollout_batches_each_turns_queries_through_execute_many(tiny_tokenizer, thread_ex):
    rec = Recorder(thread_ex)
    factory = make_environment_factory(executor=rec, max_turns=3)
    scripts = {
        "a": [f"<sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"],
        "b": [f"<sql>{GOLD}</sql>", f"<solution>{GOLD}</solution>"],
        "c": ["<sql>SELECT nope FROM customers</sql>", f"<solution>{PARTIAL}</solution>"],
        "d": [f"<solution>{GOLD}</solution>"],
    }
    rows = [
        {"prompt": [{"role": "user", "content": f"Q:{k}|"}], "db_id": "shop", "gold_sql": GOLD}
        for k in scripts
    ]
    traces = run_text_episodes(
        ScriptedBackend(tiny_tokenizer, scripts),
        tiny_tokenizer,
        [r["prompt"] for r in rows],
        rows,
        factory,
        max_turns=3,
    )
    # was: one executor.execute per query, one after the other, in the trainer process
    assert rec.execute_calls == []
    gold_batch, turn1, turn2 = rec.many_calls
    assert gold_batch == [("shop", GOLD)]  # the batch's distinct gold queries, once
    assert turn1 == [
        ("shop", PARTIAL),
        ("shop", GOLD),
        ("shop", "SELECT nope FROM customers"),
        ("shop", GOLD),
    ]
    assert turn2 == [("shop", GOLD), ("shop", GOLD), ("shop", PARTIAL)]
    a, b, c, d = (t.env for t in traces)
    assert a.turn_scores == [pytest.approx(2 / 3), 1.0] and a.final_ex
    assert b.turn_scores == [1.0, 1.0] and c.turn_errors == [True, False] and not c.final_ex
    assert d.n_turns == 1 and d.final_ex
    assert "no such column" in traces[2].text  # the batched result reached the observation
