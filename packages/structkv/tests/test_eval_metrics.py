"""LongBench metrics (hand-computed cases, LongBench's quirks included) and the eval prompt layout."""

from __future__ import annotations

import copy

import pytest
import torch

from structkv.evaluate import normalize_record, records_to_eval_samples
from structkv.metrics import (
    MetricError,
    classification_score,
    code_sim_score,
    count_score,
    longbench_score,
    metric_for,
    normalize_answer,
    qa_f1_score,
    retrieval_score,
    rouge_l,
    rouge_score,
    substring_score,
)


def test_qa_f1_uses_squad_normalisation():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert qa_f1_score("The cat sat.", "a cat sat on mat") == pytest.approx(2 / 3)
    assert qa_f1_score("dog", "cat") == 0.0


def test_rouge_l_is_summary_level_with_distinct_words():
    # two hypothesis sentences whose LCS unions cover the one reference sentence
    assert rouge_l("the cat sat. on the mat", "the cat sat on the mat")["f"] == pytest.approx(1.0)
    # distinct words (the rouge package's exclusive=True): a repeated hypothesis is not penalised
    assert rouge_l("a b a b", "a b")["p"] == pytest.approx(1.0)
    r = rouge_l("x y z", "x q z w")  # LCS {x, z}: p = 2/3, r = 2/4
    assert (r["p"], r["r"]) == (pytest.approx(2 / 3), pytest.approx(0.5))
    assert r["f"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), rel=1e-6)
    assert rouge_score("", "a reference") == 0.0  # LongBench scores errors 0
    long = " ".join(f"w{i}" for i in range(1200))  # > the recursion limit: the package failed here
    assert rouge_score(long, long) == pytest.approx(1.0)


def test_code_sim_takes_the_first_code_line():
    pred = "```python\n# a comment\nx = foo(1)\nreturn x"
    assert code_sim_score(pred, "x = foo(1)") == 1.0
    assert code_sim_score(pred, "x = foo(2)") == 0.9  # difflib ratio 2·9/20, fuzz rounds to 90
    assert code_sim_score("# only comments", "x") == 0.0


def test_classification_follows_longbench_including_its_skip():
    classes = ["Location", "Location city", "Person"]
    assert classification_score("Location city", "Location city", all_classes=classes) == 1.0
    assert classification_score("Person or Location", "Person", all_classes=classes) == 0.5
    # LongBench removes while iterating: after "a" is removed, "ab" is never examined
    assert classification_score("abc", "abc", all_classes=["a", "ab", "abc"]) == 0.5
    with pytest.raises(MetricError, match="all_classes"):
        classification_score("x", "y", all_classes=None)


def test_retrieval_count_substring():
    assert retrieval_score("Paragraph 12 and 3", "Paragraph 12") == 0.5
    assert retrieval_score("none", "Paragraph 12") == 0.0
    with pytest.raises(MetricError, match="Paragraph"):
        retrieval_score("1", "12")
    assert count_score("There are 7 unique, not 8", "7") == 0.5
    assert substring_score("the number is 123456.", " 123456 ") == 1.0
    assert substring_score("anything", "  ") == 0.0


def test_longbench_score_max_over_answers_and_first_line_tasks():
    assert longbench_score("Paris\nLondon is wrong", ["London"], "qa_f1", "triviaqa") == 0.0
    assert longbench_score("Paris\nLondon is wrong", ["London"], "qa_f1") == pytest.approx(0.4)
    assert longbench_score("red fox", ["blue", "red fox"], "qa_f1") == 1.0
    assert metric_for("hotpotqa") == metric_for("hotpotqa_e") == "qa_f1"
    assert metric_for("lcc") == "code_sim" and metric_for("gov_report") == "rouge"
    assert metric_for("my_task") == metric_for(None) == "substring"
    assert metric_for("lcc", "substring") == "substring"
    with pytest.raises(MetricError, match="bleu"):
        metric_for(None, "bleu")
    with pytest.raises(MetricError, match="at least one"):
        longbench_score("x", [], "qa_f1")


def test_records_take_longbench_columns():
    r = normalize_record({"context": "c", "input": "q?", "answers": ["a", "b"], "dataset": "trec"})
    assert r["question"] == "q?" and r["answer"] == ["a", "b"]
    with pytest.raises(MetricError, match="input"):
        normalize_record({"context": "c", "answers": ["a"]})


def test_eval_samples_use_the_chat_template_unless_disabled(tiny_tokenizer):
    rec = {"context": "some long document", "question": "what?", "answer": "x", "dataset": "qasper"}
    with_t = records_to_eval_samples([rec], tiny_tokenizer)[0]
    plain_tok = copy.deepcopy(tiny_tokenizer)
    plain_tok.chat_template = None
    ref_plain = records_to_eval_samples([rec], plain_tok)[0]
    without = records_to_eval_samples([rec], tiny_tokenizer, chat_template=False)[0]
    whole = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": rec["context"] + rec["question"]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    got = tiny_tokenizer.decode(torch.cat([with_t.context_ids, with_t.question_ids[0]]))
    assert got == whole  # context opens the user turn, the question closes it
    assert torch.equal(without.context_ids, ref_plain.context_ids)
    assert torch.equal(without.question_ids[0], ref_plain.question_ids[0])
    assert with_t.dataset == "qasper" and with_t.answer_texts == [["x"]]
