"""Policy SQL runs in worker processes by default: the only isolation with a hard timeout
(issue 21, §4: one long C call ran 22 s on a 2 s limit in thread mode)."""

from __future__ import annotations

import inspect
import time

import pytest

from agentic_sql.env import make_environment_factory
from agentic_sql.executor import SandboxLimits, SQLiteExecutor

#: one C call (LIKE's matcher, O(len(text) x len(pattern))) that never reaches the progress
#: handler: ~5 s on this machine, whatever the timeout
LONG_C_CALL = "SELECT printf('%.*c', 200000, 'a') LIKE '%' || printf('%.*c', 10000, 'a') || 'b'"


def test_policy_sql_defaults_to_process_isolation(tmp_path, make_shop_db):
    from agentic_sql.rewards import close_shared_executors, shared_executor

    root = make_shop_db(tmp_path)
    for fn in (SQLiteExecutor.__init__, make_environment_factory):
        assert inspect.signature(fn).parameters["isolation"].default == "process"
    try:
        ex, _ = shared_executor(root)  # behind the module-level rewards (a db_root column)
        assert ex.isolation == "process"
    finally:
        close_shared_executors()
    assert "no hard timeout" in SQLiteExecutor.__doc__


def test_process_isolation_kills_a_long_c_call_near_its_deadline(tmp_path, make_shop_db):
    root = make_shop_db(tmp_path)
    limits = SandboxLimits(kill_grace_s=0.5, watchdog_grace_s=0.1)
    with SQLiteExecutor(root, timeout_s=0.3, isolation="process", limits=limits) as ex:
        assert ex.execute("shop", "SELECT 1").ok  # the worker is up
        t0 = time.monotonic()
        res = ex.execute("shop", LONG_C_CALL)
        took = time.monotonic() - t0
        assert res.timed_out and res.error_kind == "timeout" and "killed" in res.error
        assert took < 0.3 + 0.5 + 2.0, took
        # a fresh worker serves the next query
        assert ex.execute("shop", "SELECT count(*) FROM customers").rows == [(3,)]


@pytest.mark.slow
def test_thread_isolation_overruns_its_deadline_on_a_long_c_call(tmp_path, make_shop_db):
    """Documents the limit of thread mode (slow: the call runs to its end, ~5 s)."""
    root = make_shop_db(tmp_path)
    with SQLiteExecutor(root, timeout_s=0.3, isolation="thread") as ex:
        t0 = time.monotonic()
        ex.execute("shop", LONG_C_CALL)
        assert time.monotonic() - t0 > 2.0
