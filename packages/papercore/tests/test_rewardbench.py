"""papercore.rewardbench: section scores computed by hand on a tiny table, both weightings."""

from __future__ import annotations

import math

import pytest

from papercore.errors import MalformedInputError
from papercore.rewardbench import (
    REWARDBENCH_COUNTS,
    REWARDBENCH_SECTIONS,
    read_rewardbench_parquet,
    section_of,
    section_scores,
)

# Chat: easy 3/4 right, length 0/2; Reasoning: math-prm 1/2, hep-go 2/2, hep-cpp 0/1; one unknown subset
TABLE = {
    "alpacaeval-easy": [True, True, True, False],
    "alpacaeval-length": [False, False],
    "math-prm": [True, False],
    "hep-go": [True, True],
    "hep-cpp": [False],
    "my-own-subset": [True],
}


def test_table_is_consistent():
    subsets = [s for subs in REWARDBENCH_SECTIONS.values() for s in subs]
    assert len(subsets) == len(set(subsets)) == 23
    assert set(subsets) == set(REWARDBENCH_COUNTS)
    assert REWARDBENCH_COUNTS["math-prm"] == 984
    assert section_of("hep-rust") == "Reasoning" and section_of("nope") == "Other"


def test_official_weights_by_hand():
    s = section_scores(TABLE, weights="official")
    chat = (0.75 * 100 + 0.0 * 95) / (100 + 95)
    reasoning = (0.5 * 984 + 1.0 * 164 + 0.0 * 164) / (984 + 164 + 164)
    assert s["sections"] == {"Chat": pytest.approx(chat), "Reasoning": pytest.approx(reasoning)}
    assert s["overall"] == pytest.approx((chat + reasoning) / 2)
    assert s["subsets"]["my-own-subset"] == 1.0 and s["subsets"]["alpacaeval-easy"] == 0.75


def test_observed_weights_by_hand():
    s = section_scores(TABLE, weights="observed")
    chat = (0.75 * 4 + 0.0 * 2) / 6
    code = (1.0 * 2 + 0.0 * 1) / 3
    reasoning = (0.5 + code) / 2  # math-prm weighs as much as all code subsets together
    assert s["sections"] == {"Chat": pytest.approx(chat), "Reasoning": pytest.approx(reasoning)}
    assert s["overall"] == pytest.approx((chat + reasoning) / 2)
    # the two weightings really differ on this table
    assert (
        s["sections"]["Reasoning"]
        != section_scores(TABLE, weights="official")["sections"]["Reasoning"]
    )


def test_missing_subsets_and_sections():
    # math-prm alone in Reasoning (observed): its accuracy; empty subsets are ignored
    s = section_scores({"math-prm": [True, False, False, False], "hep-go": []}, weights="observed")
    assert s["sections"] == {"Reasoning": 0.25} and s["overall"] == 0.25
    assert "hep-go" not in s["subsets"]
    # only subsets outside the four sections: accuracies but no section, overall NaN
    s = section_scores({"other": [True]}, weights="official")
    assert s["sections"] == {} and math.isnan(s["overall"]) and s["subsets"] == {"other": 1.0}


def test_bad_input_errors(tmp_path):
    with pytest.raises(MalformedInputError, match=r"'official' or 'observed'.*'counts'"):
        section_scores(TABLE, weights="counts")  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError, match="mapping"):
        section_scores([("math-prm", [True])], weights="official")  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError, match="sequences of bools"):
        section_scores({"math-prm": True}, weights="official")  # type: ignore[dict-item]
    with pytest.raises(MalformedInputError, match="no outcome"):
        section_scores({"math-prm": []}, weights="observed")


def test_read_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    with pytest.raises(FileNotFoundError):
        read_rewardbench_parquet(tmp_path / "missing.parquet")
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "subset": "hep-go", "id": 7}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ok.parquet")
    assert read_rewardbench_parquet(tmp_path / "ok.parquet") == rows
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "p", "chosen": "c"}]), tmp_path / "cols.parquet"
    )
    with pytest.raises(MalformedInputError, match=r"\['rejected', 'subset'\]"):
        read_rewardbench_parquet(tmp_path / "cols.parquet")
    bad = [{"prompt": "p", "chosen": "c", "rejected": 3, "subset": "hep-go"}]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "types.parquet")
    with pytest.raises(MalformedInputError, match="row 0: 'rejected' must be a string, got int"):
        read_rewardbench_parquet(tmp_path / "types.parquet")


def test_read_rm_bench_json_and_json_lines_and_bad_records(tmp_path):
    import json

    from papercore.errors import MalformedInputError
    from papercore.rewardbench import read_rm_bench

    recs = [
        {
            "id": "chat/1",
            "prompt": "p",
            "chosen": ["a", "aa", "aaa"],
            "rejected": ["b", "bb", "bbb"],
            "domain": "chat",
        },
        {"prompt": "q", "chosen": ["c", "cc", "ccc"], "rejected": ["d", "dd", "ddd"]},
    ]
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    got = read_rm_bench(tmp_path / "a.json")
    assert got == read_rm_bench(tmp_path / "a.jsonl")
    assert [(r["id"], r["domain"]) for r in got] == [("chat/1", "chat"), (1, None)]
    assert got[0]["chosen"] == ["a", "aa", "aaa"] and got[1]["rejected"][2] == "ddd"
    bad = [
        (
            {"prompt": "p", "chosen": ["a", "b"], "rejected": ["c", "d", "e"]},
            "lists of 3 strings; 'chosen' is list of length 2",
        ),
        (
            {"prompt": "p", "chosen": ["a", "b", 3], "rejected": ["c", "d", "e"]},
            "lists of 3 strings",
        ),
        (
            {"chosen": ["a", "b", "c"], "rejected": ["c", "d", "e"]},
            "missing or non-string 'prompt'",
        ),
        ("text", "expected an object, got str"),
    ]
    for rec, msg in bad:
        (tmp_path / "b.json").write_text(json.dumps([rec]))
        with pytest.raises(MalformedInputError, match=msg):
            read_rm_bench(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("[]")
    with pytest.raises(MalformedInputError, match="non-empty"):
        read_rm_bench(tmp_path / "c.json")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(MalformedInputError, match="neither JSON nor JSON lines"):
        read_rm_bench(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError):
        read_rm_bench(tmp_path / "missing.json")
