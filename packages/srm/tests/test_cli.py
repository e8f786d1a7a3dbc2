"""The srm CLI end to end on tiny models: build-aux → train-branch → enrich → train-rm → eval / diagnose."""

import json
import textwrap

from typer.testing import CliRunner

from srm_reward.cli import app

runner = CliRunner()

HELPERS = textwrap.dedent("""
    def style(prompt, response):
        return "format list" if response.lstrip().startswith("-") else "format sentence"

    def intent(prompt, response):
        return "intent " + prompt.split()[0]

    def gen(prompt, response, n, seed):
        return ["supported", "contradicted", "supported", "contradicted"][:n]

    def judge(prompt, response, candidate, dimension):
        return 1.0 if candidate == "supported" else 0.0
""")


def _ok(res):
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_pipeline(world, word_tok, tmp_path, monkeypatch, one_torch_thread):
    from papercore.io import write_jsonl
    from papercore.testing.builders import save_model_dir, tiny_causal_lm
    from srm_reward.experiment import tiny_reward_model

    (tmp_path / "srm_cli_helpers.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    base_rm = save_model_dir(
        tiny_reward_model(word_tok, hidden_size=32), word_tok, tmp_path / "base_rm"
    )
    base_lm = save_model_dir(
        tiny_causal_lm("llama", tokenizer=word_tok), word_tok, tmp_path / "base_lm"
    )
    pairs = world.pairs(world.train_entities[:16], 1, seed=0)
    write_jsonl(
        tmp_path / "pairs.jsonl",
        [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs],
    )
    write_jsonl(
        tmp_path / "seed.jsonl",
        [{"prompt": p["prompt"], "response": p["rejected"]} for p in pairs[:6]],
    )

    out = _ok(
        runner.invoke(
            app,
            [
                "build-aux",
                "--dimension",
                "factcheck",
                "--seed-pairs",
                str(tmp_path / "seed.jsonl"),
                "--generator",
                "srm_cli_helpers:gen",
                "--judge",
                "srm_cli_helpers:judge",
                "-n",
                "2",
                "--out",
                str(tmp_path / "aux.jsonl"),
            ],
        )
    )
    assert "kept 6" in out
    _ok(
        runner.invoke(
            app,
            [
                "train-branch",
                "--dimension",
                "factcheck",
                "--data",
                str(tmp_path / "aux.jsonl"),
                "--base",
                str(base_lm),
                "--out",
                str(tmp_path / "branches" / "factcheck"),
                "--steps",
                "2",
                "--max-new-tokens",
                "2",
            ],
        )
    )
    assert (tmp_path / "branches" / "factcheck" / "adapter_config.json").is_file()
    cal = [
        "--callable",
        "semantic=srm_cli_helpers:intent",
        "--callable",
        "style=srm_cli_helpers:style",
    ]
    common = ["--branches", str(tmp_path / "branches"), "--base", str(base_lm), *cal]
    _ok(
        runner.invoke(
            app,
            [
                "enrich",
                "--data",
                str(tmp_path / "pairs.jsonl"),
                "--out",
                str(tmp_path / "enr.jsonl"),
                "--tokenizer",
                str(base_rm),
                "--max-length",
                "256",
                *common,
            ],
        )
    )
    row = json.loads((tmp_path / "enr.jsonl").read_text().splitlines()[0])
    assert "<aux dim=factcheck>" in row["chosen"] and "<aux dim=style>" in row["rejected"]
    _ok(
        runner.invoke(
            app,
            [
                "train-rm",
                "--data",
                str(tmp_path / "enr.jsonl"),
                "--base",
                str(base_rm),
                "--out",
                str(tmp_path / "rm"),
                "--steps",
                "2",
                "--batch-size",
                "4",
            ],
        )
    )
    out = _ok(
        runner.invoke(
            app,
            [
                "eval",
                "--srm",
                str(tmp_path / "rm"),
                "--bench",
                f"jsonl:{tmp_path / 'pairs.jsonl'}",
                *common,
                "--ablate",
                "style",
                "--out",
                str(tmp_path / "res.json"),
            ],
        )
    )
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["n"] == 16 and 0 <= res["accuracy"] <= 1 and res["ablate"] == ["style"]
    write_jsonl(
        tmp_path / "bad.jsonl",
        [{"prompt": p["prompt"], "response": p["rejected"]} for p in pairs[:4]],
    )
    out = _ok(
        runner.invoke(
            app,
            [
                "diagnose",
                "--srm",
                str(tmp_path / "rm"),
                "--data",
                str(tmp_path / "bad.jsonl"),
                *common,
            ],
        )
    )
    assert "factcheck" in out and "issue_rate" in out
    # the branch set must equal the trained one
    res = runner.invoke(
        app,
        [
            "eval",
            "--srm",
            str(tmp_path / "rm"),
            "--bench",
            f"jsonl:{tmp_path / 'pairs.jsonl'}",
            "--branches",
            str(tmp_path / "branches"),
            "--base",
            str(base_lm),
            cal[0],
            cal[1],
        ],
    )
    assert res.exit_code == 2 and "style" in res.output  # style branch missing
    res = runner.invoke(
        app,
        [
            "eval",
            "--srm",
            str(tmp_path / "rm"),
            "--bench",
            f"jsonl:{tmp_path / 'pairs.jsonl'}",
            *cal,
        ],
    )
    assert res.exit_code != 0 and "factcheck" in res.output
