"""Observations are bounded in rows, columns, cell and total characters, each with an explicit
marker (issue 21, §4: a 1,000-column SELECT produced 4.96M characters)."""

from __future__ import annotations

import re

import pytest

from agentic_sql.env import make_environment_factory
from agentic_sql.executor import (
    MAX_OBS_CHARS,
    MAX_OBS_COLS,
    ExecResult,
    SQLiteExecutor,
    format_observation,
)

WIDE = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 60) SELECT "
    + ", ".join(f"printf('%.100c', 'x') AS c{j}" for j in range(1000))
    + " FROM r"
)


@pytest.fixture(scope="module")
def ex(tmp_path_factory, make_shop_db):
    root = make_shop_db(tmp_path_factory.mktemp("obs"))
    with SQLiteExecutor(root, isolation="thread", max_rows=100) as e:
        yield e


def test_a_1000_column_select_is_capped_with_markers(ex):
    res = ex.execute("shop", WIDE)
    assert res.ok and len(res.columns) == 1000 and len(res.rows) == 60
    unbounded = format_observation(res, max_cols=None, max_chars=None)
    assert len(unbounded) > 4_000_000  # what the agent was shown before
    obs = format_observation(res)
    assert len(obs) <= MAX_OBS_CHARS
    header = obs.splitlines()[0]
    assert header.endswith(f"| ... ({1000 - MAX_OBS_COLS} more columns)")
    assert header.count(" | ") == MAX_OBS_COLS  # 50 names + the marker
    m = re.search(r"\.\.\. \((\d+) more characters\)$", obs)
    assert m is not None
    # the marker counts exactly what was cut from the column-capped text
    capped = format_observation(res, max_chars=None)
    assert int(m.group(1)) == len(capped) - len(obs[: obs.rindex("\n... (")])
    assert capped.startswith(obs[: obs.rindex("\n... (")])


def test_the_environment_applies_the_caps(ex):
    f = make_environment_factory(executor=ex, max_turns=3, max_obs_cols=5, max_obs_chars=2_000)
    env = f()
    env.reset(db_id="shop", gold_sql="SELECT name FROM customers")
    obs = env.execute_sql(WIDE)
    table, reminder = obs.rsplit("\n", 1)
    assert reminder == "(2 turns left.)"
    assert len(table) <= 2_000 and "(995 more columns)" in table and "more characters)" in table


@pytest.mark.parametrize("budget", [40, 60, 100, 250, 1000])
def test_total_cap_holds_for_any_budget(budget):
    res = ExecResult(ok=True, columns=["a", "b"], rows=[("x" * 30, i) for i in range(40)])
    obs = format_observation(res, max_chars=budget)
    assert len(obs) <= budget and obs.endswith("more characters)")
    full = format_observation(res, max_chars=None)
    kept = obs[: obs.rindex("\n... (")]
    assert full.startswith(kept)


def test_small_results_and_errors_are_unchanged():
    res = ExecResult(ok=True, columns=["a"], rows=[(1,), (2,)])
    assert format_observation(res) == "a\n1\n2"
    err = ExecResult(ok=False, error="x" * 50_000, error_kind="sqlite")
    obs = format_observation(err)
    assert obs.startswith("Error: xxx") and len(obs) <= MAX_OBS_CHARS
