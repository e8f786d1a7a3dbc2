"""Loaders (BIRD, Spider, Spider 2.0-SQLite), schema rendering, prompts, the synthetic suite, bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import pytest

from agentic_sql.data import (
    build_prompt,
    load_bird,
    load_spider,
    load_spider2_sqlite,
    make_synthetic_task_suite,
    read_split,
    render_schema,
)
from agentic_sql.errors import DatabaseNotFoundError, MalformedDatasetError
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.synth import DIFFICULTIES, build_synthetic_suite

COLUMNS = {"prompt", "question", "evidence", "db_id", "gold_sql", "difficulty", "question_id",
           "db_root", "schema"}  # fmt: skip


# --------------------------------------------------------------------------- loaders


def test_load_bird_fixture(bird_dir, bird_db_root):
    ds = load_bird(bird_dir / "dev.json", bird_db_root)
    assert len(ds) == 6 and set(ds.column_names) >= COLUMNS
    assert Counter(ds["difficulty"]) == {"simple": 3, "moderate": 2, "challenging": 1}
    row = ds[1]
    assert row["gold_sql"] == "SELECT name FROM customers WHERE age > 30"
    assert row["evidence"] == "older than 30 refers to age > 30"
    assert row["question_id"] == 1 and row["db_root"] == str(bird_db_root)
    system, user = row["prompt"]
    assert system["role"] == "system" and "<solution>" in system["content"]
    assert user["role"] == "user" and user["content"].endswith(f"Question: {row['question']}")
    assert "External knowledge: older than 30" in user["content"]
    assert 'CREATE TABLE "order notes"' in row["schema"]
    assert row["schema"] == ds[0]["schema"]  # rendered once per database


def test_load_bird_tools_protocol_and_limit(bird_dir, bird_db_root):
    ds = load_bird(
        bird_dir / "dev.json", bird_db_root, protocol="tools", with_schema=False, limit=2
    )
    assert len(ds) == 2 and ds[0]["schema"] == ""
    assert "submit_answer" in ds[0]["prompt"][0]["content"]


def test_load_spider_fixture(spider_dir):
    ds = load_spider(spider_dir / "dev.json", spider_dir / "database")
    assert len(ds) == 3
    assert set(ds["difficulty"]) == {"unknown"} and set(ds["evidence"]) == {""}
    assert ds[0]["gold_sql"] == "SELECT count(*) FROM singer"
    assert ds["question_id"] == [0, 1, 2]
    with SQLiteExecutor(spider_dir / "database", isolation="thread") as ex:
        assert ex.execute(ds[0]["db_id"], ds[0]["gold_sql"]).rows == [(3,)]


@pytest.fixture
def spider2_dirs(tmp_path, spider_dir):
    """(database root holding concert_mini, gold dir holding local001.sql) for Spider 2.0-lite."""
    root = tmp_path / "localdb"
    root.mkdir()
    shutil.copy(spider_dir / "database" / "concert_mini" / "concert_mini.sqlite", root)
    gold = tmp_path / "gold"
    gold.mkdir()
    (gold / "local001.sql").write_text("SELECT name FROM singer\n")
    return root, gold


def test_load_spider2_sqlite_keeps_sqlite_entries(tmp_path, spider2_dirs):
    root, gold = spider2_dirs
    lines = [
        {"instance_id": "local001", "db": "concert_mini", "question": "Singer names?",
         "external_knowledge": None},
        {"instance_id": "bq001", "db": "bigquery-public-data", "question": "x"},
    ]  # fmt: skip
    split = tmp_path / "spider2-lite.jsonl"
    split.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = load_spider2_sqlite(split, root, gold_sql_dir=gold)
    assert len(ds) == 1 and ds[0]["instance_id"] == "local001"
    assert ds[0]["gold_sql"] == "SELECT name FROM singer"
    only_bq = tmp_path / "bq.jsonl"
    only_bq.write_text(json.dumps(lines[1]) + "\n")
    with pytest.raises(MalformedDatasetError, match="no entry has a SQLite database"):
        load_spider2_sqlite(only_bq, root)


def test_load_spider2_sqlite_drops_entries_without_gold(tmp_path, spider2_dirs, caplog):
    root, gold = spider2_dirs
    (gold / "local003.sql").write_text("  \n")  # empty file: no gold either
    lines = [
        {"instance_id": f"local00{i}", "db": "concert_mini", "question": f"q{i}"} for i in (1, 2, 3)
    ]
    split = tmp_path / "spider2-lite.jsonl"
    split.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with caplog.at_level("WARNING"):
        ds = load_spider2_sqlite(split, root, gold_sql_dir=gold)
    assert ds["instance_id"] == ["local001"] and ds["gold_sql"] == ["SELECT name FROM singer"]
    assert "dropped 2 SQLite entries without gold SQL" in caplog.text
    with pytest.raises(MalformedDatasetError, match="none of the 3 SQLite entries has gold SQL"):
        load_spider2_sqlite(split, root)  # no gold_sql_dir at all


def test_schema_reader_decodes_text_like_the_sandbox(tmp_path):
    import sqlite3

    from agentic_sql.data import _open_ro
    from agentic_sql.executor import _decode_text

    db = tmp_path / "t.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (s TEXT)")
    con.execute("INSERT INTO t VALUES (CAST(X'61FF62' AS TEXT))")  # not UTF-8
    con.commit()
    con.close()
    conn = _open_ro(db)
    try:
        assert conn.text_factory is _decode_text  # one decoder, not a copy
        assert conn.execute("SELECT s FROM t").fetchone() == ("a\\xffb",)
    finally:
        conn.close()
    assert "'a\\\\xffb'" in render_schema(db)


# --------------------------------------------------------------------------- bad inputs


def test_missing_database_folder(bird_dir, tmp_path):
    with pytest.raises(DatabaseNotFoundError, match="database folder not found"):
        load_bird(bird_dir / "dev.json", tmp_path / "no_such_folder")


def test_unknown_db_id_names_the_entry(tmp_path, bird_db_root):
    entries = json.loads((bird_db_root.parent / "dev.json").read_text())
    entries[2]["db_id"] = "atlantis"
    split = tmp_path / "dev.json"
    split.write_text(json.dumps(entries))
    with pytest.raises(DatabaseNotFoundError, match=r"entry 2: database 'atlantis' not found"):
        load_bird(split, bird_db_root)


@pytest.mark.parametrize(
    "content, match",
    [
        ('[{"db_id": "toy_shop", "question": "q", "SQL": "SELECT 1"},', r"invalid JSON at line 1"),
        ('{"db_id": "toy_shop"}', "expected a JSON list"),
        ('[{"db_id": "toy_shop", "question": "q", "SQL": "SELECT 1"}, 7]', "entry 1 is a int"),
        (
            '[{"db_id": "toy_shop", "question": "q", "SQL": "SELECT 1"}, {"db_id": "toy_shop", '
            '"question": "q"}]',
            r"entry 1 lacks the key\(s\) \['SQL'\]",
        ),
        (
            '[{"db_id": "toy_shop", "question": 3, "SQL": "SELECT 1"}]',
            "entry 0: 'question' must be",
        ),
        ("[]", "no questions"),
    ],
)
def test_malformed_bird_json(tmp_path, bird_db_root, content, match):
    split = tmp_path / "dev.json"
    split.write_text(content)
    with pytest.raises(MalformedDatasetError, match=match):
        load_bird(split, bird_db_root)


def test_malformed_jsonl_names_the_line(tmp_path):
    split = tmp_path / "x.jsonl"
    split.write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(MalformedDatasetError, match="line 3"):
        read_split(split)


def test_missing_split_file(tmp_path, bird_db_root):
    with pytest.raises(FileNotFoundError, match="split file not found"):
        load_bird(tmp_path / "dev.json", bird_db_root)


def test_malformed_errors_are_value_errors():
    assert issubclass(MalformedDatasetError, ValueError)
    assert issubclass(DatabaseNotFoundError, FileNotFoundError)


# --------------------------------------------------------------------------- schema and prompt


def test_render_schema_with_samples_and_limits(bird_db_root):
    path = bird_db_root / "toy_shop" / "toy_shop.sqlite"
    text = render_schema(path)
    assert text.startswith("CREATE TABLE customers (\n  id INTEGER PRIMARY KEY,")
    assert "name TEXT, -- examples: ['ann', 'bob', 'cy']" in text
    assert "FOREIGN KEY (customer_id) REFERENCES customers(id)" in text
    assert "raw BLOB -- examples: [<blob>]" in text
    bare = render_schema(path, sample_values=0)
    assert "examples" not in bare and "CREATE TABLE numbers" in bare
    short = render_schema(path, max_chars=len(bare))
    assert short == bare  # samples dropped first
    tiny = render_schema(path, max_chars=80)
    assert len(tiny) <= 80 and tiny.endswith("(schema truncated)")
    with pytest.raises(DatabaseNotFoundError):
        render_schema(bird_db_root / "nope.sqlite")


def test_build_prompt():
    msgs = build_prompt("How many?", "", "CREATE TABLE t (a);", "text", max_turns=3)
    assert "at most 3 turns" in msgs[0]["content"]
    assert "External knowledge" not in msgs[1]["content"]
    custom = build_prompt("q", "ev", "s", "tools", system_prompt="Be brief ({max_turns}).")
    assert (
        custom[0]["content"] == "Be brief (5)." and "External knowledge: ev" in custom[1]["content"]
    )
    with pytest.raises(ValueError, match="protocol"):
        build_prompt("q", "", "s", "json")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- synthetic suite


def test_synthetic_suite_shape(synthetic_suite):
    ds, root = synthetic_suite
    assert len(ds) == 200 and {"template", "split"} <= set(ds.column_names)
    counts = Counter(ds["difficulty"])
    assert set(counts) == set(DIFFICULTIES) and min(counts.values()) >= 60
    assert set(ds["db_id"]) == {"shop", "school", "library", "company"}
    assert 0.1 < ds["split"].count("test") / len(ds) < 0.3
    assert len(set(zip(ds["db_id"], ds["question"], strict=True))) == 200  # no duplicates
    for f in ("dev.json", "train.json", "test.json", "dev_gold.sql"):
        assert (root / f).is_file()
    assert len(json.loads((root / "train.json").read_text())) == ds["split"].count("train")


def test_synthetic_gold_queries_execute_and_are_non_empty(synthetic_suite):
    ds, root = synthetic_suite
    with SQLiteExecutor(root, isolation="thread") as ex:
        results = ex.execute_many(list(zip(ds["db_id"], ds["gold_sql"], strict=True)))
    assert all(r.ok and r.rows and not r.truncated for r in results)


def test_synthetic_suite_reloads_with_load_bird(synthetic_suite):
    ds, root = synthetic_suite
    again = load_bird(root / "dev.json", root, extra_columns=("split",))
    assert again["gold_sql"] == ds["gold_sql"] and again["split"] == ds["split"]
    assert again["prompt"] == ds["prompt"]


def test_synthetic_suite_is_deterministic(tmp_path):
    a = build_synthetic_suite(n_questions=60, seed=3)
    b = build_synthetic_suite(n_questions=60, seed=3)
    c = build_synthetic_suite(n_questions=60, seed=4)
    assert a.questions == b.questions and a.questions != c.questions
    _, r1 = make_synthetic_task_suite(n_dbs=2, n_questions=30, seed=3, out_dir=tmp_path / "a")
    _, r2 = make_synthetic_task_suite(n_dbs=2, n_questions=30, seed=3, out_dir=tmp_path / "b")
    for db in ("shop", "school"):
        h1 = hashlib.sha256((r1 / db / f"{db}.sqlite").read_bytes()).hexdigest()
        h2 = hashlib.sha256((r2 / db / f"{db}.sqlite").read_bytes()).hexdigest()
        assert h1 == h2
    assert (r1 / "dev.json").read_bytes() == (r2 / "dev.json").read_bytes()


def test_synthetic_suite_more_databases_and_bad_arguments():
    s = build_synthetic_suite(n_dbs=6, n_questions=30)
    assert list(s.databases) == ["shop", "school", "library", "company", "shop_2", "school_2"]
    with pytest.raises(ValueError, match="n_dbs"):
        build_synthetic_suite(n_dbs=0)
    with pytest.raises(ValueError, match="n_questions"):
        build_synthetic_suite(n_questions=0)
    with pytest.raises(ValueError, match="n_persons"):
        build_synthetic_suite(n_persons=1000)


def test_render_schema_warns_when_it_truncates(bird_db_root, caplog):
    """A schema cut to fit ``max_chars`` is logged as a WARNING naming the tables not shown, and the
    marker says how much is missing (was: a silent cut)."""
    import logging

    path = bird_db_root / "toy_shop" / "toy_shop.sqlite"
    bare = render_schema(path, sample_values=0)
    with caplog.at_level(logging.WARNING, logger="agentic_sql.data"):
        render_schema(path, max_chars=len(bare))  # only the examples dropped: no warning
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        cut = render_schema(path, max_chars=300)
    assert len(cut) <= 300 and "schema truncated:" in cut and "more characters" in cut
    assert "tables not shown: " in cut
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "truncated" in warnings[0] and "toy_shop.sqlite" in warnings[0]
    assert "tables not shown" in warnings[0] and "max_schema_chars" in warnings[0]
