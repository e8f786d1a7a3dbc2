import threading

import pytest

from ilp_diag import (
    ExactMatchJudge,
    NumericAnswerJudge,
    RecordError,
    SampleRecord,
    SimilarityJudge,
    records_from_rows,
    validate_records,
)
from ilp_diag.errors import JudgeError
from ilp_diag.judges import check_score, make_judge


def test_missing_target_and_duplicate_idx_raise():
    with pytest.raises(RecordError, match="target"):
        records_from_rows([{"idx": 0, "prompt": "x"}])
    with pytest.raises(RecordError, match="non-empty target"):
        validate_records([SampleRecord(0, "x", "  ")])
    with pytest.raises(RecordError, match="duplicate idx 3"):
        validate_records([SampleRecord(3, "a", "b"), SampleRecord(3, "c", "d")])
    with pytest.raises(RecordError, match="empty list"):
        validate_records([])
    assert isinstance(RecordError("x"), ValueError)


def test_rows_accept_completion_column():
    (r,) = records_from_rows([{"idx": 5, "prompt": "p", "completion": " t", "stage_id": 1}])
    assert (r.idx, r.target, r.stage_id) == (5, " t", 1)


def test_exact_match_normalises():
    j = ExactMatchJudge()
    assert j(" Paris.", "paris") == 1.0
    assert j("Lyon", "paris") == 0.0
    assert ExactMatchJudge(normalize=False)(" Paris.", "paris") == 0.0


def test_check_score_rejects_out_of_range():
    with pytest.raises(JudgeError, match=r"\[0, 1\]"):
        check_score(1.5, "a", "b")
    with pytest.raises(JudgeError):
        check_score("yes", "a", "b")
    assert check_score(True, "a", "b") == 1.0


def test_numeric_judge_equivalence_off_main_thread():
    j = NumericAnswerJudge()
    results = {}

    def run():
        results["frac"] = j(r"The answer is $\frac{1}{2}$", "0.5")
        results["wrong"] = j("$3$", "4")
        results["text"] = j("blue", "Blue")

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert results == {"frac": 1.0, "wrong": 0.0, "text": 1.0}


def test_similarity_judge_minilm(minilm_path):
    j = SimilarityJudge(threshold=0.8)
    assert j("The capital of France is Paris.", "Paris is the capital of France.") == 1.0
    assert j("The capital of France is Paris.", "Bananas are yellow fruit.") == 0.0
    graded = SimilarityJudge(graded=True, model=j.model)
    assert 0.0 <= graded("a cat", "a dog") <= 1.0


def test_make_judge_unknown():
    with pytest.raises(JudgeError, match="unknown judge"):
        make_judge("bleu")
