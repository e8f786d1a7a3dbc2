"""Loaders (RM-Bench 3x3, RewardBench sections, JSONL pairs) and counted skips."""

from pathlib import Path

import pytest

from srm_reward import (
    clean_pairs,
    load_jsonl_pairs,
    load_rewardbench,
    load_rm_bench,
    rewardbench_scores,
    rm_bench_scores,
)
from srm_reward.errors import PreferenceDataError

FIX = Path(__file__).parent / "fixtures"


def test_rm_bench_3x3_levels():
    pairs = load_rm_bench(FIX / "rm_bench_sample.json")
    assert len(pairs) == 18
    first = [p for p in pairs if p["id"] == "chat/1"]
    levels = {(p["i"], p["j"]): p["level"] for p in first}
    assert levels[(0, 2)] == "hard" and levels[(1, 1)] == "normal" and levels[(2, 0)] == "easy"
    assert sum(v == "hard" for v in levels.values()) == 3
    # a "length-loving" scorer: prefers the longer response → wins easy, loses hard
    correct = [len(p["chosen"]) > len(p["rejected"]) for p in pairs]
    s = rm_bench_scores(pairs, correct)
    assert s["easy"] == 1.0 and s["hard"] == 0.0
    assert s["overall"] == pytest.approx((s["easy"] + s["normal"] + s["hard"]) / 3)


def test_rm_bench_bad_record(tmp_path):
    (tmp_path / "b.json").write_text(
        '[{"prompt": "p", "chosen": ["a"], "rejected": ["b", "c", "d"]}]'
    )
    with pytest.raises(PreferenceDataError, match="lists of 3"):
        load_rm_bench(tmp_path / "b.json")


def test_rewardbench_sections_and_weights():
    rows = load_rewardbench(FIX / "rewardbench_sample.parquet")
    assert {r["section"] for r in rows} == {"Chat", "Chat Hard", "Safety", "Reasoning"}
    # right on everything but math-prm: Reasoning = (0 + 1) / 2 whatever the counts
    correct = [r["subset"] != "math-prm" for r in rows]
    s = rewardbench_scores(rows, correct)
    assert s["section/Reasoning"] == 0.5 and s["section/Chat"] == 1.0
    assert s["score"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_jsonl_pairs_counted_skips():
    rows, skipped = load_jsonl_pairs(FIX / "pairs_sample.jsonl")
    assert len(rows) == 2
    assert skipped == {"identical": 1, "tie": 2, "missing_fields": 1}
    with pytest.raises(PreferenceDataError, match="does not exist"):
        load_jsonl_pairs(FIX / "nope.jsonl")
    with pytest.raises(PreferenceDataError, match="field 'chosen'"):
        clean_pairs([{"prompt": "p", "chosen": 3, "rejected": "x"}])
