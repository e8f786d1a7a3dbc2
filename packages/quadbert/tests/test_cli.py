"""The quadbert CLI end to end on a BEIR-layout folder, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quadbert.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def beir_dir(synthetic, tmp_path_factory):
    from papercore.retrieval import RetrievalData, save_beir

    folder = tmp_path_factory.mktemp("beir")
    for split, part in (("train", synthetic.train), ("test", synthetic.test)):
        save_beir(RetrievalData(synthetic.corpus, part.queries, part.qrels), folder, split)
    return folder


def test_help_lists_every_command():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("mine", "train", "index", "search", "eval", "demo"):
        assert cmd in res.output


def test_mine_train_index_search_eval(beir_dir, st_model_dir, tmp_path, one_torch_thread):
    quads = tmp_path / "quads.jsonl"
    res = invoke("mine", beir_dir, "-o", quads, "--hard-k", 20, "--n-per-query", 2, "--seed", 1)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in quads.read_text().splitlines()]
    assert len(rows) == 200 and {"anchor", "hard_negative_id", "simple_negative"} <= set(rows[0])
    assert "wrote 200 quadruplets from 100 queries" in res.output

    model_dir = tmp_path / "model"
    common = ("--data", quads, "-o", model_dir, "--batch-size", 8, "--lr", 1e-4, "--save-steps", 1)
    res = invoke("train", "-m", st_model_dir, *common, "--max-steps", 2)
    assert res.exit_code == 0, res.output
    assert (model_dir / "modules.json").is_file() and (model_dir / "checkpoint-2").is_dir()
    res = invoke("train", "-m", st_model_dir, *common, "--max-steps", 3, "--resume", "latest")
    assert res.exit_code == 0, res.output
    state = json.loads((model_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3

    index_dir = tmp_path / "index"
    res = invoke(
        "index",
        "-m",
        model_dir,
        "--corpus",
        beir_dir,
        "-o",
        index_dir,
        "--index",
        "ivf",
        "--nlist",
        4,
        "--nprobe",
        4,
    )
    assert res.exit_code == 0, res.output
    assert "indexed 288 documents (ivf, dim 64)" in res.output
    run_path = tmp_path / "run.trec"
    res = invoke("search", index_dir, "--queries", beir_dir, "-o", run_path, "-k", 20)
    assert res.exit_code == 0, res.output
    lines = run_path.read_text().splitlines()
    assert len(lines) == 44 * 20 and lines[0].split()[1] == "Q0" and lines[0].endswith("quadbert")
    probe1 = tmp_path / "probe1.trec"
    res = invoke("search", index_dir, "--queries", beir_dir, "-o", probe1, "-k", 100, "--nprobe", 1)
    assert res.exit_code == 0, res.output
    # one of 4 lists (~72 of 288 documents) cannot fill a top-100: fewer results than k per query
    assert len(probe1.read_text().splitlines()) < 44 * 100

    metrics = tmp_path / "metrics.json"
    res = invoke("eval", run_path, "--qrels", beir_dir, "-o", metrics)
    assert res.exit_code == 0, res.output
    scores = json.loads(metrics.read_text())
    assert set(scores) == {"MRR@10", "R@10", "R@100", "nDCG@10"}
    assert "nDCG@10" in res.output
    res = invoke("eval", run_path, "--qrels", beir_dir / "qrels" / "test.tsv", "--metrics", "P@5")
    assert res.exit_code == 0 and "P@5" in res.output


def error_line(res) -> str:
    assert res.exit_code == 2, res.output
    text = (res.stderr or res.output).strip()
    assert "Traceback" not in text
    last = text.splitlines()[-1]  # after any library progress output
    assert last.startswith("error:"), text
    return last


def test_missing_folder_is_one_line(tmp_path):
    assert "BEIR folder not found" in error_line(invoke("mine", tmp_path / "nope"))


def test_duplicate_ids_are_reported(beir_dir, tmp_path):
    import shutil

    bad = tmp_path / "dup"
    shutil.copytree(beir_dir, bad)
    first = (bad / "corpus.jsonl").read_text().splitlines()[0]
    with (bad / "corpus.jsonl").open("a") as fh:
        fh.write(first + "\n")
    assert "duplicate document id 'd00000'" in error_line(invoke("mine", bad))
    shutil.copy(beir_dir / "corpus.jsonl", bad / "corpus.jsonl")
    first = (bad / "queries.jsonl").read_text().splitlines()[0]
    with (bad / "queries.jsonl").open("a") as fh:
        fh.write(first + "\n")
    assert "duplicate query id" in error_line(invoke("mine", bad))


def test_training_errors(tmp_path, beir_dir, st_model_dir):
    quads = tmp_path / "q.jsonl"
    quads.write_text('{"anchor": "a", "positive": "b", "hard_negative": "c"}\n')
    assert "missing required key(s) ['simple_negative']" in error_line(
        invoke("train", "-m", st_model_dir, "--data", quads)
    )
    quads.write_text(
        '{"anchor": "a", "positive": "b", "hard_negative": "c", "simple_negative": "d"}\n'
    )
    assert "quad_weight must be >= 0" in error_line(
        invoke("train", "-m", st_model_dir, "--data", quads, "--quad-weight", -1)
    )
    assert "no checkpoint-* folder" in error_line(
        invoke(
            "train", "-m", st_model_dir, "--data", quads, "-o", tmp_path / "m", "--resume", "latest"
        )
    )
    assert "does not exist" in error_line(
        invoke("train", "-m", tmp_path / "no-model", "--data", quads)
    )


def test_index_and_search_errors(tmp_path, beir_dir, st_model_dir):
    assert "use nlist ≤ N/39" in error_line(
        invoke(
            "index",
            "-m",
            st_model_dir,
            "--corpus",
            beir_dir,
            "-o",
            tmp_path / "i",
            "--index",
            "ivf",
            "--nlist",
            1000,
        )
    )
    (tmp_path / "empty-index").mkdir()
    assert "pass --model" in error_line(
        invoke("search", tmp_path / "empty-index", "--queries", beir_dir)
    )


def test_eval_errors(tmp_path, beir_dir):
    assert "TREC run file not found" in error_line(
        invoke("eval", tmp_path / "missing.trec", "--qrels", beir_dir)
    )
    run = tmp_path / "run.trec"
    run.write_text("q00100 Q0 d00001 1 0.5 tag\n")
    assert "unknown IR metric 'XYZ@3'" in error_line(
        invoke("eval", run, "--qrels", beir_dir, "--metrics", "XYZ@3")
    )
    run.write_text("q00100 Q0 d00001 1\n")
    assert "expected 6 fields" in error_line(invoke("eval", run, "--qrels", beir_dir))


def test_output_paths_are_checked_before_any_work(tmp_path, beir_dir, st_model_dir, monkeypatch):
    import quadbert.cli as cli

    def no_model(*a, **k):  # the check must come before loading (or encoding) anything
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(cli, "_encoder", no_model)
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is a directory; expected a file path" in error_line(
        invoke("mine", beir_dir, "-o", a_dir)
    )
    assert "is a file; expected a directory" in error_line(
        invoke("index", "-m", st_model_dir, "--corpus", beir_dir, "-o", a_file)
    )
    assert "a-file is a file, not a directory" in error_line(
        invoke("index", "-m", st_model_dir, "--corpus", beir_dir, "-o", a_file / "sub")
    )
    assert "is a directory; expected a file path" in error_line(
        invoke("search", tmp_path, "--queries", beir_dir, "-o", a_dir)
    )
    assert "is a directory; expected a file path" in error_line(
        invoke("eval", a_file, "--qrels", beir_dir, "-o", a_dir)
    )


def test_os_errors_become_one_line(tmp_path, beir_dir, monkeypatch):
    import papercore.io

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "q.jsonl"))

    monkeypatch.setattr(papercore.io, "write_jsonl", disk_full)
    line = error_line(invoke("mine", beir_dir, "-o", tmp_path / "q.jsonl", "--hard-k", 20))
    assert "OutputPathError: No space left on device" in line and "q.jsonl" in line


def test_empty_query_sets_and_mismatched_runs_fail(tmp_path, beir_dir, st_model_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(beir_dir, bad)
    (bad / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nnope\td00001\t1\n")
    assert "split 'dev' keeps no query" in error_line(
        invoke("search", tmp_path, "--queries", bad, "--split", "dev", "-o", tmp_path / "r")
    )
    empty = tmp_path / "queries.jsonl"
    empty.write_text("")
    assert "no query to search" in error_line(
        invoke("search", tmp_path, "--queries", empty, "-o", tmp_path / "r")
    )
    run = tmp_path / "run.trec"
    run.write_text("x1 Q0 d00001 1 0.5 tag\n")
    assert "run and qrels share no query id" in error_line(invoke("eval", run, "--qrels", beir_dir))


def test_beir_fixture_keeps_both_splits_queries(beir_dir):
    """save_beir merges queries.jsonl: train and test saved into one folder both load."""
    from papercore.retrieval import load_beir

    assert len(load_beir(beir_dir, "train").queries) == 100
    assert len(load_beir(beir_dir, "test").queries) == 44


def test_index_and_search_take_prompts_lengths_and_factory_strings(
    tmp_path, beir_dir, st_model_dir, one_torch_thread
):
    index_dir = tmp_path / "idx"
    res = invoke(
        "index", "-m", st_model_dir, "--corpus", beir_dir, "-o", index_dir,
        "--index", "IVF4,Flat", "--nprobe", 4, "--query-prompt", "query: ",
        "--document-prompt", "passage: ", "--query-max-length", 16, "--chunk-size", 100,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = json.loads((index_dir / "config.json").read_text())
    assert (cfg["index"], cfg["query_prompt"], cfg["document_prompt"]) == (
        "IVF4,Flat", "query: ", "passage: ",
    )  # fmt: skip
    assert (cfg["query_max_length"], cfg["chunk_size"], cfg["nlist"]) == (16, 100, 4)
    run = tmp_path / "run.trec"
    res = invoke("search", index_dir, "--queries", beir_dir, "-o", run, "-k", 10, "--mmap")
    assert res.exit_code == 0, res.output
    assert len(run.read_text().splitlines()) == 44 * 10
    assert "is not 'flat', 'ivf' or 'hnsw'" in error_line(
        invoke("index", "-m", st_model_dir, "--corpus", beir_dir, "-o", tmp_path / "x",
               "--index", "IVF4,Bogus")
    )  # fmt: skip
