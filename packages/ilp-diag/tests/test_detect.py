import logging

import pytest

from ilp_diag import ExactMatchJudge, SampleRecord, detect_unlearned
from ilp_diag.errors import ConfigError, JudgeError


def _conflict_world():
    # cluster of 3 near-duplicates (same prompt) with 3 different targets; the model learned each ~1/3
    recs = [
        SampleRecord(0, "Q: city of zor ?\nA:", " lima"),
        SampleRecord(1, "Q: city of zor ?\nA:", " oslo"),
        SampleRecord(2, "Q: city of zor ?\nA:", " rome"),
        SampleRecord(3, "Q: color of bob ?\nA:", " red"),
    ]
    table = {
        "Q: city of zor ?\nA:": [(" lima", 0.36), (" oslo", 0.33), (" rome", 0.31)],
        "Q: color of bob ?\nA:": [(" red", 0.95), (" blue", 0.05)],
    }
    return recs, table


def test_conflicting_duplicates_graded_vs_pass_at_n(table_backend):
    recs, table = _conflict_world()
    graded = detect_unlearned(
        table_backend(table), recs, ExactMatchJudge(), n=32, criterion="graded"
    )
    passn = detect_unlearned(
        table_backend(table), recs, ExactMatchJudge(), n=32, criterion="pass@n"
    )
    by = graded.set_index("idx")
    # greedy answers "lima": idx 1 and 2 are greedy-wrong with learn_score < 0.5 -> unlearned under graded
    assert by.loc[0, "greedy_ok"] and not by.loc[1, "greedy_ok"] and not by.loc[2, "greedy_ok"]
    assert by.loc[[1, 2], "unlearned"].all()
    assert not by.loc[[0, 3], "unlearned"].any()
    # every variant is hit by some sample: pass@n hides all of them
    assert passn["pass_at_n"].all() and not passn["unlearned"].any()
    assert list(graded.columns[:7]) == [
        "idx",
        "stage_id",
        "task",
        "greedy_ok",
        "pass_at_n",
        "learn_score",
        "best_score",
    ]
    assert graded.attrs["generation"]["n"] == 32


def test_greedy_criterion_and_scores(table_backend):
    recs, table = _conflict_world()
    df = detect_unlearned(
        table_backend(table), recs, ExactMatchJudge(), n=16, criterion="greedy", seed=3
    )
    assert df.set_index("idx").loc[[1, 2], "unlearned"].all()
    assert df["best_score"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert 0.0 < df.set_index("idx").loc[1, "learn_score"] < 0.6


def test_judge_out_of_range_raises(table_backend):
    recs, table = _conflict_world()
    with pytest.raises(JudgeError, match=r"\[0, 1\]"):
        detect_unlearned(table_backend(table), recs, lambda p, t: 2.0, n=2)


def test_bad_settings(table_backend, caplog):
    recs, table = _conflict_world()
    with pytest.raises(ConfigError, match="criterion"):
        detect_unlearned(table_backend(table), recs, ExactMatchJudge(), criterion="bon")
    with pytest.raises(ConfigError, match="n must be"):
        detect_unlearned(table_backend(table), recs, ExactMatchJudge(), n=0)
    with caplog.at_level(logging.WARNING):
        detect_unlearned(table_backend(table), recs, ExactMatchJudge(), n=2, temperature=0.0)
    assert "collapses to greedy" in caplog.text


def test_transformers_backend_plumbing(world, world_tok, make_model, one_torch_thread):
    from papercore.generation import make_backend

    be = make_backend("transformers", model=make_model(), tokenizer=world_tok)
    recs = world.records[:4]
    df = detect_unlearned(be, recs, ExactMatchJudge(), n=3, keep_completions=True)
    assert len(df) == 4 and all(len(s) == 3 for s in df["samples"])
    # an untrained model learned nothing
    assert df["unlearned"].all()
    assert df.attrs["generation"]["max_new_tokens"] >= 32
