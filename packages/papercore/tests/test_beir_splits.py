"""BEIR folders with several splits, empty splits, and runs that do not match their qrels."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from papercore.errors import MalformedInputError
from papercore.retrieval import RetrievalData, evaluate_run, load_beir, load_queries, save_beir

needs_ir_measures = pytest.mark.skipif(
    importlib.util.find_spec("ir_measures") is None,
    reason='needs ir_measures: pip install "papercore[retrieval]"',
)

CORPUS = {"d1": "comet tail", "d2": "oven bread", "d3": "harbor boats"}
TRAIN = RetrievalData(CORPUS, {"q1": "comet", "q2": "bread"}, {"q1": {"d1": 1}, "q2": {"d2": 1}})
TEST = RetrievalData(CORPUS, {"q3": "boats"}, {"q3": {"d3": 1}})


def test_saving_two_splits_into_one_folder_keeps_both_splits_queries(tmp_path):
    save_beir(TRAIN, tmp_path, "train")
    save_beir(TEST, tmp_path, "test")
    assert load_beir(tmp_path, "train") == TRAIN
    assert load_beir(tmp_path, "test") == TEST


def test_a_changed_query_text_is_overwritten_with_a_warning(tmp_path, caplog):
    save_beir(TRAIN, tmp_path, "train")
    changed = RetrievalData(CORPUS, {"q1": "comets"}, {"q1": {"d1": 1}})
    with caplog.at_level(logging.WARNING, logger="papercore.retrieval.data"):
        save_beir(changed, tmp_path, "train")
    assert "1 query id(s) already there with another text" in caplog.text
    assert load_queries(tmp_path / "queries.jsonl") == {"q1": "comets", "q2": "bread"}


def test_a_split_that_keeps_no_query_raises(tmp_path):
    save_beir(TRAIN, tmp_path, "train")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td3\t1\n")
    with pytest.raises(MalformedInputError, match=r"split 'test' keeps no query.*\['q9'\]"):
        load_beir(tmp_path, "test")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t0\n")
    with pytest.raises(MalformedInputError, match="no query with a relevance > 0"):
        load_beir(tmp_path, "test")


@needs_ir_measures
def test_runs_that_miss_the_qrels_raise_or_warn(caplog):
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    with pytest.raises(MalformedInputError, match="run is empty"):
        evaluate_run({}, qrels)
    with pytest.raises(MalformedInputError, match="run and qrels share no query id"):
        evaluate_run({"x1": {"d1": 1.0}}, qrels)
    with caplog.at_level(logging.WARNING, logger="papercore.retrieval.metrics"):
        assert evaluate_run({"q1": {"d1": 1.0}}, qrels, ["MRR@10"])["MRR@10"] == pytest.approx(
            1 / 3
        )
    assert "only 1 of the 3 judged queries are in the run" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="papercore.retrieval.metrics"):
        evaluate_run({"q1": {"d1": 1.0}, "q2": {"d1": 1.0}}, qrels, ["MRR@10"])
    assert caplog.text == ""
