"""RewardBench / RM-Bench loaders and scoring on committed fixture files, judged by E-GRM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from egrm_reward import DataFormatError, EfficientGRM, EGRMConfig
from egrm_reward.data import (
    evaluate_rewardbench,
    evaluate_rmbench,
    load_rewardbench,
    load_rmbench,
    rewardbench_scores,
    rmbench_scores,
)

FIX = Path(__file__).parent / "fixtures"


def content_judge(prompt, config, k):
    a = prompt.split("Response A:")[1].split("Response B:")[0]
    return "[[A]]" if "good" in a else "[[B]]"


def test_rewardbench_loader_and_eval(scripted):
    pairs = load_rewardbench(FIX / "rewardbench_tiny.parquet")
    assert len(pairs) == 12 and {p.subset for p in pairs} >= {"math-prm", "hep-python"}
    grm = EfficientGRM(scripted(content_judge), config=EGRMConfig(aggregation="vote"))
    res = evaluate_rewardbench(grm, pairs, seed=0)
    assert res["overall"] == 1.0 and all(v == 1.0 for v in res["sections"].values())
    assert set(res["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}


def test_rewardbench_section_weights():
    # Reasoning: math-prm (weight 984) at 1.0, hep-python (weight 164) at 0.0
    s = rewardbench_scores(
        {"math-prm": [True, True], "hep-python": [False, False], "alpacaeval-easy": [True, False]}
    )
    assert s["sections"]["Reasoning"] == pytest.approx(984 / (984 + 164))
    assert s["sections"]["Chat"] == 0.5
    assert s["overall"] == pytest.approx((984 / 1148 + 0.5) / 2)


def test_rmbench_loader_matrix(scripted):
    items = load_rmbench(FIX / "rmbench_tiny.json")
    assert len(items) == 3 and len(items[0].chosen) == 3
    grm = EfficientGRM(scripted(content_judge), config=EGRMConfig(aggregation="vote"))
    res = evaluate_rmbench(grm, items)
    assert res["hard"] == res["normal"] == res["easy"] == 1.0
    # a style-biased judge (prefers the longer response): hard cells wrong, easy cells right
    c = np.zeros((4, 3, 3))
    c[:, np.tril_indices(3, -1)[0], np.tril_indices(3, -1)[1]] = 1
    sc = rmbench_scores(c)
    assert (sc["hard"], sc["normal"], sc["easy"]) == (0.0, 0.0, 1.0)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "p", "chosen": ["a", "b"], "rejected": ["c", "d", "e"]}]))
    with pytest.raises(DataFormatError, match="3 strings"):
        load_rmbench(bad)
    with pytest.raises(FileNotFoundError):
        load_rewardbench(tmp_path / "missing.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "chosen": "c"}]), tmp_path / "x.parquet")
    with pytest.raises(DataFormatError, match="rejected"):
        load_rewardbench(tmp_path / "x.parquet")
    with pytest.raises(DataFormatError):
        rmbench_scores(np.zeros((2, 2, 2)))
