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
