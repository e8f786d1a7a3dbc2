"""The kls CLI on CSV/JSONL files: fit, smooth, train, eval, and one-line errors (exit code 2)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from kls.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_cls_data):
    d = tmp_path_factory.mktemp("cli")
    tr = small_cls_data["train"]
    names = tr.features["label"].names
    with (d / "train.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        for r in tr:
            w.writerow({"text": r["text"], "label": names[r["label"]]})
    with (d / "test.jsonl").open("w") as fh:
        for r in small_cls_data["test"]:
            fh.write(json.dumps({"text": r["text"], "label": names[r["label"]]}) + "\n")
    return d, names


def test_fit_writes_keywords(files):
    d, names = files
    res = runner.invoke(
        app, ["fit", str(d / "train.csv"), "-o", str(d / "kw.json"), "--top-k", "5"]
    )
    assert res.exit_code == 0, res.output
    kw = json.loads((d / "kw.json").read_text())
    assert sorted(kw["classes"]) == sorted(names)
    assert all(len(v) == 5 for v in kw["keywords"].values())


def test_smooth_writes_soft_labels_fitted_on_train(files):
    d, names = files
    res = runner.invoke(
        app,
        [
            "smooth",
            str(d / "train.csv"),
            "--data",
            str(d / "test.jsonl"),
            "-o",
            str(d / "soft.jsonl"),
            "--alpha",
            "0.1",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (d / "soft.jsonl").read_text().splitlines()]
    classes = sorted(names)
    for r in rows:
        assert len(r["soft_label"]) == len(names)
        assert sum(r["soft_label"]) == pytest.approx(1.0, abs=1e-6)
        assert r["soft_label"][classes.index(r["label"])] >= 0.9 - 1e-9


def test_train_then_eval_gives_a_plain_classifier(files, tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    d, names = files
    res = runner.invoke(
        app,
        [
            "train",
            str(d / "train.csv"),
            "--model",
            str(tiny_bert_dir),
            "-o",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--max-length",
            "32",
            "--lr",
            "1e-3",
        ],
    )
    assert res.exit_code == 0, res.output
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert model.config.num_labels == len(names)
    assert not any("kls_aux" in k for k in model.state_dict())
    res = runner.invoke(
        app, ["eval", str(tmp_path / "m"), str(d / "test.jsonl"), "-o", str(tmp_path / "s.json")]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "s.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 12
    assert "not held-out" not in res.output
    # the leakage guard: the smoother saved beside the model knows its training texts
    assert (tmp_path / "m" / "kls-smoother" / "config.json").is_file()
    res = runner.invoke(app, ["eval", str(tmp_path / "m"), str(d / "train.csv")])
    assert res.exit_code == 0, res.output
    assert "100% of" in res.output and "not held-out" in res.output.replace("\n", " ")


def test_fit_save_then_smooth_with_the_saved_smoother(files, tmp_path):
    d, _ = files
    res = runner.invoke(
        app,
        [
            "fit",
            str(d / "train.csv"),
            "-o",
            str(tmp_path / "kw.json"),
            "--save",
            str(tmp_path / "sm"),
        ],
    )
    assert res.exit_code == 0, res.output
    fitted = tmp_path / "a.jsonl"
    loaded = tmp_path / "b.jsonl"
    res = runner.invoke(
        app, ["smooth", str(d / "train.csv"), "--data", str(d / "test.jsonl"), "-o", str(fitted)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "smooth",
            "--smoother",
            str(tmp_path / "sm"),
            "--data",
            str(d / "test.jsonl"),
            "-o",
            str(loaded),
        ],
    )
    assert res.exit_code == 0, res.output
    assert fitted.read_text() == loaded.read_text()
    # refuses to overwrite, before fitting anything
    res = runner.invoke(app, ["fit", str(d / "train.csv"), "--save", str(tmp_path / "sm")])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["smooth", "--smoother", str(tmp_path / "sm")])
    assert res.exit_code == 2 and "--data" in res.output


def test_tokenizer_option_for_chinese_text(tmp_path, tiny_bert_dir):
    rows = [("我喜欢猫", "cat"), ("猫很可爱", "cat"), ("他喜欢狗", "dog"), ("狗很忠诚", "dog")]
    (tmp_path / "zh.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) for t, y in rows)
    )
    res = runner.invoke(app, ["fit", str(tmp_path / "zh.jsonl"), "-o", str(tmp_path / "kw.json")])
    assert res.exit_code == 2 and "--tokenizer char" in res.output.replace("\n", " ")
    res = runner.invoke(
        app,
        ["fit", str(tmp_path / "zh.jsonl"), "-o", str(tmp_path / "kw.json"), "--tokenizer", "char"],
    )
    assert res.exit_code == 0, res.output
    kw = json.loads((tmp_path / "kw.json").read_text())
    assert "猫" in kw["keywords"]["cat"] and "狗" in kw["keywords"]["dog"]
    res = runner.invoke(
        app,
        [
            "smooth",
            str(tmp_path / "zh.jsonl"),
            "-o",
            str(tmp_path / "s.jsonl"),
            "--tokenizer",
            str(tiny_bert_dir),
        ],
    )
    assert res.exit_code == 0, res.output


def test_bad_inputs_exit_2_with_one_line(files, tmp_path):
    d, _ = files
    (tmp_path / "one.csv").write_text("text,label\na b,x\nc d,x\n")
    (tmp_path / "nocol.csv").write_text("body,label\na b,x\n")
    (tmp_path / "cjk.jsonl").write_text(
        "\n".join(
            json.dumps({"text": t, "label": y})
            for t, y in [("我喜欢猫", 0), ("猫", 0), ("狗", 1), ("狗狗", 1)]
        )
    )
    cases = [
        (["fit", str(tmp_path / "one.csv")], "at least 2 classes"),
        (["fit", str(tmp_path / "nocol.csv")], "missing required column"),
        (["fit", str(tmp_path / "cjk.jsonl")], "CJK"),
        (["smooth", str(d / "train.csv"), "--alpha", "1.5"], "alpha must be in"),
        (["smooth", str(d / "train.csv"), "--tau", "0"], "tau must be in"),
        (["fit", str(tmp_path / "missing.csv")], "not found"),
    ]
    for argv, msg in cases:
        res = runner.invoke(app, argv)
        assert res.exit_code == 2, (argv, res.output)
        assert msg in res.output.replace("\n", " "), (argv, res.output)


ENH_CORPUS = {
    "d1": "the red apple grows on the old tree in the orchard",
    "d2": "a blue car drives down the long road at night",
    "d3": "fresh apple juice is made from red apples",
    "d4": "the train leaves the station every morning",
    "d5": "an orchard of pear trees near the river",
}
ENH_GROUPS = [
    ("red apple orchard", "d1", "d2", "d3"),
    ("car on the road", "d2", "d4", "d3"),
    ("morning train", "d4", "d5", "d1"),
    ("pear trees river", "d5", "d1", "d2"),
]


@pytest.fixture(scope="module")
def enhance_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("enhance")
    with (d / "corpus.jsonl").open("w") as fh:
        for did, text in ENH_CORPUS.items():
            fh.write(json.dumps({"_id": did, "title": "", "text": text}) + "\n")
    with (d / "groups.jsonl").open("w") as fh:
        for q, p, n1, n2 in ENH_GROUPS:
            row = {
                "anchor": q,
                "positive": ENH_CORPUS[p],
                "negative_1": ENH_CORPUS[n1],
                "negative_2": ENH_CORPUS[n2],
            }
            fh.write(json.dumps(row) + "\n")
    return d


@pytest.mark.parametrize("weighter", ["bm25", "deepct"])
def test_enhance_writes_label_distributions(enhance_files, tiny_bert_dir, tmp_path, weighter):
    d = enhance_files
    dest = tmp_path / "enhanced.jsonl"
    argv = ["enhance", "--model", str(tiny_bert_dir), "--corpus", str(d / "corpus.jsonl")]
    argv += ["--train", str(d / "groups.jsonl"), "-o", str(dest), "--alpha", "0.6"]
    argv += ["--weighter", weighter]
    res = runner.invoke(app, [*argv, "--batch-size", "2", "--lr", "1e-3"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["anchor"] for r in rows] == [g[0] for g in ENH_GROUPS]
    for r in rows:
        assert len(r["label"]) == 3  # positive + 2 negatives
        assert sum(r["label"]) == pytest.approx(1.0, abs=1e-5)
        assert min(r["label"]) >= 0.0
        assert max(r["label"]) == r["label"][0]  # keep_gold_top, even at α = 0.6
        assert r["label"][0] >= 0.4 - 1e-6  # (1 − α) on the positive at least


def test_enhance_bad_inputs_exit_2_with_one_line(enhance_files, tiny_bert_dir, tmp_path):
    d = enhance_files
    (tmp_path / "nopos.jsonl").write_text(json.dumps({"anchor": "q", "negative_1": "x"}) + "\n")
    base = ["enhance", "--model", str(tiny_bert_dir), "--corpus", str(d / "corpus.jsonl")]
    no_model = [
        "enhance",
        "--model",
        str(tmp_path / "nomodel"),
        "--corpus",
        str(d / "corpus.jsonl"),
    ]
    cases = [
        ([*base, "--train", str(tmp_path / "nopos.jsonl")], "missing required key"),
        ([*base, "--train", str(d / "groups.jsonl"), "--alpha", "1.5"], "alpha must be in"),
        (
            [*base, "--train", str(d / "groups.jsonl"), "--weighter", "bogus"],
            "one of bm25, tfidf, deepct, auto",
        ),
        ([*no_model, "--train", str(d / "groups.jsonl")], "model directory not found"),
    ]
    for argv, msg in cases:
        res = runner.invoke(app, [*argv, "-o", str(tmp_path / "x.jsonl")])
        assert res.exit_code == 2, (argv, res.output)
        assert msg in res.output.replace("\n", " "), (argv, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "x.jsonl").exists()
