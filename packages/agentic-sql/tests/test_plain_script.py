"""Issue 21 §3: the executor / rewards / evaluate_ex work from a plain script (no ``__main__`` guard),
and an infrastructure failure raises once with a clear error instead of becoming a score."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agentic_sql.atr import ATRConfig
from agentic_sql.errors import SandboxWorkerError
from agentic_sql.eval import evaluate_ex
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.rewards import make_reward_funcs

COMPLETIONS = [
    "<solution>SELECT COUNT(*) FROM customers WHERE city = 'paris'</solution>",
    "<sql>SELECT name, city FROM customers</sql><observation>...</observation>"
    "<solution>SELECT COUNT(*) FROM customers</solution>",
    "<sql>SELECT COUNT(*) FROM customers WHERE city = 'paris'</sql>",  # never submitted
]
GOLD = "SELECT COUNT(*) FROM customers WHERE city = 'paris'"

SCRIPT = """
import json, sys
from agentic_sql import ATRConfig, SQLiteExecutor, make_reward_funcs
from agentic_sql.eval import evaluate_ex

db_root, completions, gold = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
executor = SQLiteExecutor(db_root)  # README quickstart: default isolation="process"
(reward,) = make_reward_funcs("atr", executor, ATRConfig(lam=0.5))
rewards = reward(prompts=["q"] * len(completions), completions=completions,
                 db_id=["toy_shop"] * len(completions), gold_sql=[gold] * len(completions))
rows = [{"db_id": "toy_shop", "gold_sql": gold}] * 2
ex = evaluate_ex([gold, "SELECT 1"], rows, executor)["ex"]
many = [r.ok for r in executor.execute_many([("toy_shop", "SELECT 1")] * 8)]
executor.close()
print(json.dumps({"rewards": rewards, "ex": ex, "many": many}))
"""


def test_readme_path_works_from_a_script_without_main_guard(tmp_path, bird_db_root):
    script = tmp_path / "train_rewards.py"
    script.write_text(textwrap.dedent(SCRIPT))
    assert "__main__" not in script.read_text()
    proc = subprocess.run(
        [sys.executable, str(script), str(bird_db_root), json.dumps(COMPLETIONS), GOLD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        (reward,) = make_reward_funcs("atr", ex, ATRConfig(lam=0.5))
        want = reward(
            prompts=["q"] * 3, completions=COMPLETIONS, db_id=["toy_shop"] * 3, gold_sql=[GOLD] * 3
        )
    assert None not in got["rewards"]
    assert got["rewards"] == pytest.approx(want)
    assert got["rewards"][0] > got["rewards"][1] > got["rewards"][2]
    assert got["ex"] == 0.5
    assert got["many"] == [True] * 8
    assert "Traceback" not in proc.stderr


def _broken(db_root) -> SQLiteExecutor:
    ex = SQLiteExecutor(db_root, isolation="process", max_workers=2)
    ex._worker_command = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    return ex


def test_a_worker_that_cannot_start_raises_with_the_cause(bird_db_root):
    ex = _broken(bird_db_root)
    try:
        with pytest.raises(
            SandboxWorkerError, match=r"exited before it was ready \(exit code 3\).*boom"
        ):
            ex.execute("toy_shop", "SELECT 1")
        # later calls raise the same error at once (no retry storm, no ExecResult(ok=False))
        with pytest.raises(SandboxWorkerError, match="exit code 3"):
            ex.execute_many([("toy_shop", "SELECT 1")] * 4)
    finally:
        ex.close()


def test_a_missing_worker_program_raises(bird_db_root, tmp_path):
    ex = SQLiteExecutor(bird_db_root, isolation="process")
    ex._worker_command = [str(tmp_path / "no-such-python"), "-m", "agentic_sql.sandbox_worker"]
    try:
        with pytest.raises(SandboxWorkerError, match="cannot start the sandbox worker"):
            ex.execute("toy_shop", "SELECT 1")
    finally:
        ex.close()


def test_rewards_and_evaluate_ex_raise_instead_of_none_or_zero(bird_db_root):
    ex = _broken(bird_db_root)
    try:
        (reward,) = make_reward_funcs("atr", ex, ATRConfig())
        with pytest.raises(SandboxWorkerError):
            reward(prompts=["q"], completions=COMPLETIONS[:1], db_id=["toy_shop"], gold_sql=[GOLD])
        with pytest.raises(SandboxWorkerError):
            evaluate_ex([GOLD], [{"db_id": "toy_shop", "gold_sql": GOLD}], ex)
    finally:
        ex.close()


def test_gold_that_cannot_run_raises_in_evaluate_ex(bird_db_root):
    class CrashingGold(SQLiteExecutor):
        def execute(self, db_id, sql, **kw):
            if sql == GOLD:
                from agentic_sql.executor import _failure

                return _failure("the sandbox worker died while running the query", "crash")
            return super().execute(db_id, sql, **kw)

    with CrashingGold(bird_db_root, isolation="thread") as ex:
        with pytest.raises(SandboxWorkerError, match="gold query of question 0"):
            evaluate_ex([GOLD], [{"db_id": "toy_shop", "gold_sql": GOLD}], ex)
        (reward,) = make_reward_funcs("binary", ex, ATRConfig())
        with pytest.raises(SandboxWorkerError, match="could not run"):
            reward(prompts=["q"], completions=COMPLETIONS[:1], db_id=["toy_shop"], gold_sql=[GOLD])


def test_results_round_trip_through_the_worker_protocol(tmp_path):
    import sqlite3

    (tmp_path / "v").mkdir()
    con = sqlite3.connect(tmp_path / "v" / "v.sqlite")
    con.execute("CREATE TABLE t (a, b, c)")
    con.execute("INSERT INTO t VALUES (?, ?, ?)", (b"\x00\xff", 1.0, 2**62))
    con.execute("INSERT INTO t VALUES (?, ?, ?)", (None, float("inf"), "é\u2603"))
    con.commit()
    con.close()
    with (
        SQLiteExecutor(tmp_path, isolation="process") as px,
        SQLiteExecutor(tmp_path, isolation="thread") as tx,
    ):
        a, b = px.execute("v", "SELECT * FROM t"), tx.execute("v", "SELECT * FROM t")
    assert a.ok and a.rows == b.rows
    assert [type(v) for v in a.rows[0]] == [bytes, float, int]
