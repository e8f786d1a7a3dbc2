"""BIRD EX evaluation, the difficulty breakdown, BIRD output files and the agent evaluation loop."""

from __future__ import annotations

import json
import sqlite3

import pytest

from agentic_sql.errors import MalformedDatasetError
from agentic_sql.eval import (
    BIRD_SEPARATOR,
    NO_ANSWER_SQL,
    AgentAnswer,
    evaluate_ex,
    format_bird_table,
    gold_is_ordered,
    make_oracle_agent,
    read_bird_predictions,
    run_agent_eval,
)
from agentic_sql.executor import SQLiteExecutor


@pytest.fixture(scope="module")
def suite_executor(synthetic_suite):
    _, root = synthetic_suite
    with SQLiteExecutor(root, isolation="thread", timeout_s=5.0) as ex:
        yield ex


@pytest.fixture(scope="module")
def bird_rows(bird_dir, bird_db_root):
    from agentic_sql.data import load_bird

    return load_bird(bird_dir / "dev.json", bird_db_root)


def _wrong(sql: str) -> str:
    return sql + " LIMIT 0"  # same columns, no rows: never an EX match on the suite


def test_oracle_scores_one_everywhere(synthetic_suite, suite_executor):
    ds, _ = synthetic_suite
    m = evaluate_ex(ds["gold_sql"], ds, suite_executor)
    assert m["ex"] == 1.0 and m["n"] == 200 and m["n_correct"] == 200
    assert list(m["by_difficulty"]) == ["simple", "moderate", "challenging"]
    assert all(v["ex"] == 1.0 for v in m["by_difficulty"].values())
    assert sum(v["n"] for v in m["by_difficulty"].values()) == 200
    assert m["n_error"] == m["n_timeout"] == m["n_gold_error"] == m["n_no_answer"] == 0


def test_difficulty_breakdown_is_exact(synthetic_suite, suite_executor):
    ds, _ = synthetic_suite
    # correct on every challenging question and on every other simple/moderate one
    preds, expected = [], {"simple": [0, 0], "moderate": [0, 0], "challenging": [0, 0]}
    for i, row in enumerate(ds):
        ok = row["difficulty"] == "challenging" or i % 2 == 0
        preds.append(row["gold_sql"] if ok else _wrong(row["gold_sql"]))
        expected[row["difficulty"]][0] += ok
        expected[row["difficulty"]][1] += 1
    m = evaluate_ex(preds, ds, suite_executor)
    for d, (c, n) in expected.items():
        assert m["by_difficulty"][d] == {"ex": c / n, "n": n, "n_correct": c}
    assert m["ex"] == pytest.approx(sum(c for c, _ in expected.values()) / 200)
    assert m["by_difficulty"]["challenging"]["ex"] == 1.0


def test_bird_semantics_order_and_duplicates_ignored(bird_rows, bird_db_root):
    preds = [
        "SELECT COUNT(*) FROM customers WHERE city = 'paris'",
        "SELECT name FROM customers WHERE age > 30 UNION ALL SELECT 'ann' ORDER BY name DESC",
        "SELECT SUM(amount) FROM orders WHERE customer_id = 1",
        "SELECT name FROM students WHERE major = 'physics'",  # wrong
        "SELECT AVG(T2.score), T1.major FROM students AS T1 JOIN grades AS T2 "
        "ON T1.id = T2.student_id GROUP BY T1.major",  # column order matters -> wrong
        None,  # no answer
    ]
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        m = evaluate_ex(preds, bird_rows, ex, details=True)
    assert [r["correct"] for r in m["per_question"]] == [1, 1, 1, 0, 0, 0]
    assert m["n_no_answer"] == 1 and m["per_question"][5]["no_answer"]
    assert m["by_difficulty"]["simple"] == {"ex": 2 / 3, "n": 3, "n_correct": 2}
    assert m["by_difficulty"]["challenging"]["ex"] == 0.0


def test_spider_order_rule(spider_dir):
    from agentic_sql.data import load_spider

    assert gold_is_ordered("SELECT a FROM t ORDER BY a")
    assert not gold_is_ordered("SELECT a FROM (SELECT a FROM t ORDER BY a)")
    assert not gold_is_ordered("SELECT count(*) FROM t")
    ds = load_spider(spider_dir / "dev.json", spider_dir / "database", with_schema=False)
    preds = [
        "SELECT count(*) FROM singer",
        "SELECT name FROM singer WHERE country = 'France' ORDER BY name DESC",  # unordered gold
        "SELECT concert_name FROM concert ORDER BY year DESC",  # gold has ORDER BY year
    ]
    with SQLiteExecutor(spider_dir / "database", isolation="thread") as ex:
        auto = evaluate_ex(preds, ds, ex, order_sensitive="auto", details=True)
        bird = evaluate_ex(preds, ds, ex, details=True)
    assert [r["correct"] for r in auto["per_question"]] == [1, 1, 0]
    assert [r["correct"] for r in bird["per_question"]] == [1, 1, 1]


def test_errors_timeouts_and_failing_gold_are_counted(bird_rows, bird_db_root):
    rows = bird_rows.to_list()
    preds = [r["gold_sql"] for r in rows]
    rows[3]["gold_sql"] = "SELECT missing FROM students"  # gold fails: scored wrong, counted
    preds[0] = "SELECT nope FROM customers"
    preds[1] = (
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM r) SELECT count(*) FROM r"
    )
    preds[2] = "DROP TABLE customers"
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        m = evaluate_ex(preds, rows, ex, timeout_s=0.3)
    assert m["n_timeout"] == 1 and m["n_error"] == 2 and m["n_gold_error"] == 1
    assert m["n_correct"] == 2 and m["ex"] == pytest.approx(2 / 6) and m["timeout_s"] == 0.3


def test_length_mismatch_and_missing_columns(bird_rows, bird_db_root):
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        with pytest.raises(ValueError, match="6 questions"):
            evaluate_ex(["SELECT 1"], bird_rows, ex)
        with pytest.raises(ValueError, match="db_id"):
            evaluate_ex(["SELECT 1"], [{"question": "q", "SQL": "SELECT 1"}], ex)


def _score_bird_files(out_dir, db_root, data_mode="dev"):
    """Score the written files the way BIRD's script does: JSON predictions, tab-separated gold."""
    preds = json.loads((out_dir / f"predict_{data_mode}.json").read_text())
    gold_lines = (out_dir / f"{data_mode}_gold.sql").read_text().strip().split("\n")
    diffs = [q["difficulty"] for q in json.loads((out_dir / f"{data_mode}.json").read_text())]
    scores = []
    for i, line in enumerate(gold_lines):
        gold_sql, db = line.split("\t")
        pred_sql, pred_db = preds[str(i)].split(BIRD_SEPARATOR)
        assert pred_db == db
        conn = sqlite3.connect(f"file:{db_root / db / (db + '.sqlite')}?mode=ro", uri=True)
        try:
            ok = set(conn.execute(pred_sql).fetchall()) == set(conn.execute(gold_sql).fetchall())
        except sqlite3.Error:
            ok = False
        conn.close()
        scores.append(int(ok))
    return scores, diffs


def test_bird_output_files_reproduce_our_scores(bird_rows, bird_db_root, tmp_path):
    preds = [
        r["gold_sql"] if i % 2 == 0 else "SELECT 42\n  -- multi\tline"
        for i, r in enumerate(bird_rows)
    ]
    preds[3] = None
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        m = evaluate_ex(preds, bird_rows, ex, output_dir=tmp_path, details=True)
    scores, diffs = _score_bird_files(tmp_path, bird_db_root)
    assert scores == [r["correct"] for r in m["per_question"]]
    assert diffs == bird_rows["difficulty"]
    raw = json.loads((tmp_path / "predict_dev.json").read_text())
    assert list(raw) == [str(i) for i in range(6)]
    assert raw["3"] == f"{NO_ANSWER_SQL}{BIRD_SEPARATOR}toy_school"
    assert raw["1"] == f"SELECT 42 /* multi line */{BIRD_SEPARATOR}toy_shop"
    assert json.loads((tmp_path / "metrics.json").read_text())["ex"] == m["ex"]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["correct"] == 1
    assert read_bird_predictions(tmp_path / "predict_dev.json")[0] == (
        bird_rows[0]["gold_sql"],
        "toy_shop",
    )


def test_read_bird_predictions_errors(tmp_path):
    p = tmp_path / "predict_dev.json"
    p.write_text(json.dumps({"0": "SELECT 1"}))
    with pytest.raises(MalformedDatasetError, match="entry 0"):
        read_bird_predictions(p)
    p.write_text("[1]")
    with pytest.raises(MalformedDatasetError, match="JSON object"):
        read_bird_predictions(p)
    with pytest.raises(FileNotFoundError):
        read_bird_predictions(tmp_path / "absent.json")


def test_format_bird_table(bird_rows, bird_db_root):
    with SQLiteExecutor(bird_db_root, isolation="thread") as ex:
        m = evaluate_ex(bird_rows["gold_sql"], bird_rows, ex)
    table = format_bird_table(m)
    assert table.splitlines()[0].split() == ["simple", "moderate", "challenging", "total"]
    assert table.splitlines()[-1].split() == ["accuracy", "100.00", "100.00", "100.00", "100.00"]


# --------------------------------------------------------------------------- agents


class ScriptedAgent:
    """Explores with one query, then answers: gold for even question ids, a wrong query otherwise."""

    def __init__(self, executor):
        self.executor = executor
        self.seen = []

    def predict_batch(self, rows):
        out = []
        for r in rows:
            self.seen.append(r["question_id"])
            probe = self.executor.execute(r["db_id"], "SELECT name FROM sqlite_master")
            assert probe.ok
            final = r["gold_sql"] if r["question_id"] % 2 == 0 else _wrong(r["gold_sql"])
            out.append(AgentAnswer(final_sql=final, n_turns=2))
        return out


def test_run_agent_eval_with_oracle_and_scripted_agents(synthetic_suite, suite_executor, tmp_path):
    ds, _ = synthetic_suite
    sub = ds.select(range(30))
    m = run_agent_eval(make_oracle_agent(), None, sub, executor=suite_executor)
    assert m["ex"] == 1.0 and m["mean_turns"] == 1.0 and m["predictions"] == sub["gold_sql"]
    agent = ScriptedAgent(suite_executor)
    m = run_agent_eval(agent, None, sub, executor=suite_executor, batch_size=7, output_dir=tmp_path)
    assert agent.seen == list(range(30))
    assert m["ex"] == pytest.approx(15 / 30) and m["mean_turns"] == 2.0
    assert m["decoding"]["greedy"] is True
    assert json.loads((tmp_path / "metrics.json").read_text())["ex"] == m["ex"]


def test_run_agent_eval_builds_its_executor_from_the_dataset(synthetic_suite):
    ds, _ = synthetic_suite
    sub = ds.select(range(6))

    def agent(row):
        k = row["question_id"] % 3
        return [None, "SELECT 1", {"final_sql": row["gold_sql"], "n_turns": 3}][k]

    m = run_agent_eval(agent, None, sub, isolation="thread")
    assert m["n_no_answer"] == 2 and m["n_correct"] == 2 and m["mean_turns"] == 8 / 6
    with pytest.raises(TypeError, match="an agent must return"):
        run_agent_eval(lambda row: 3.5, None, sub, isolation="thread")
    with pytest.raises(ValueError, match="needs a dataset"):
        run_agent_eval(make_oracle_agent(), None, None)


def test_run_agent_eval_with_a_tiny_language_model(
    synthetic_suite, suite_executor, tiny_llama, tiny_tokenizer
):
    """The model path goes through the text-protocol rollout; a random model never answers."""
    ds, _ = synthetic_suite
    sub = ds.select(range(2))
    m = run_agent_eval(tiny_llama, tiny_tokenizer, sub, executor=suite_executor, max_turns=1,
                       max_new_tokens_per_turn=4)  # fmt: skip
    assert m["n"] == 2 and m["ex"] == 0.0 and m["decoding"]["max_turns"] == 1
    assert len(m["predictions"]) == 2
