"""Sampling through papercore backends (a real tiny transformers model) and the CLI commands we own."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from neurosym_cal.cli import app
from neurosym_cal.problems import CodeProblem, save_problems_jsonl
from neurosym_cal.sampling import SampleSet, load_sample_sets, sample_programs, save_sample_sets
from papercore.generation import Completion, SamplingConfig, make_backend

runner = CliRunner()

PROBLEM = CodeProblem(
    "t/add",
    'def add(a: int, b: int) -> int:\n    """Add."""\n',
    "add",
    ["assert add(1, 2) == 3"],
    "def check(candidate):\n    assert candidate(2, 2) == 4\n",
)


class ScriptedBackend:
    """Returns fixed completions (with log-probs) so the mapping to SampleSet can be checked exactly."""

    name = "scripted"

    def __init__(self, texts, logprobs):
        self.texts, self.logprobs = texts, logprobs
        self.seen: list = []

    def generate(self, prompts, config=None):
        self.seen.append((list(prompts), config))
        return [
            [
                Completion(text=t, token_ids=list(range(len(lp))) if lp else None, logprobs=lp)
                for t, lp in zip(self.texts, self.logprobs, strict=True)
            ]
            for _ in prompts
        ]


def test_sample_programs_maps_completions():
    texts = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "no code at all",
        "    return a + b\n",
    ]
    backend = ScriptedBackend(texts, [[-1.0, -3.0], None, [-0.5]])
    (s,) = sample_programs(backend, [PROBLEM.public_view()], k=3)
    prompts, cfg = backend.seen[0]
    assert cfg.n == 3 and cfg.logprobs and cfg.seed == 0
    assert "def add(a: int, b: int)" in prompts[0] and "```python" in prompts[0]
    assert s.codes[0] == "def add(a, b):\n    return a + b\n"
    assert s.codes[1] is None  # counted as syntax downstream, never dropped
    assert s.codes[2].startswith("def add(a: int, b: int)") and s.codes[2].endswith(
        "return a + b\n"
    )
    assert s.logprobs == [-2.0, None, -0.5] and s.token_counts == [2, None, 1]
    (chat,) = sample_programs(backend, [PROBLEM], k=3, chat=True)
    assert backend.seen[-1][0][0][0]["role"] == "user" and chat.k == 3
    with pytest.raises(TypeError, match="SamplingConfig"):
        sample_programs(backend, [PROBLEM], sampling={"n": 2})
    with pytest.raises(TypeError, match="generate"):
        sample_programs(object(), [PROBLEM])


def test_sample_programs_with_a_real_tiny_model(tiny_llama, tiny_tokenizer, tmp_path):
    backend = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer)
    cfg = SamplingConfig(n=2, max_new_tokens=8, temperature=1.0, seed=0, logprobs=True)
    sets = sample_programs(backend, [PROBLEM, PROBLEM], k=2, sampling=cfg)
    assert [s.k for s in sets] == [2, 2]
    assert all(lp is not None and lp <= 0 for s in sets for lp in s.logprobs)
    assert all(1 <= n <= 8 for s in sets for n in s.token_counts)
    again = sample_programs(backend, [PROBLEM, PROBLEM], k=2, sampling=cfg)
    assert [s.completions for s in again] == [s.completions for s in sets]  # seeded
    save_sample_sets(sets, tmp_path / "s.jsonl")
    assert [s.to_dict() for s in load_sample_sets(tmp_path / "s.jsonl")] == [
        s.to_dict() for s in sets
    ]


def test_sample_set_validation():
    with pytest.raises(ValueError, match="codes"):
        SampleSet("t", "p", ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="logprobs"):
        SampleSet("t", "p", ["a"], ["x"], [0.0, 0.0])


def test_cli_sample(tiny_model_dir, tmp_path):
    data = tmp_path / "problems.jsonl"
    save_problems_jsonl([PROBLEM], data)
    outp = tmp_path / "samples.jsonl"
    args = [
        "sample",
        "-m",
        str(tiny_model_dir),
        "-d",
        str(data),
        "-k",
        "2",
        "--max-new-tokens",
        "6",
        "-o",
        str(outp),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    (s,) = load_sample_sets(outp)
    assert s.task_id == "t/add" and s.k == 2
    r = runner.invoke(app, args)  # no --overwrite
    assert r.exit_code == 2 and "--overwrite" in r.output and "Traceback" not in r.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    r = runner.invoke(app, [*args[:-2], "-o", str(tmp_path / "x.jsonl"), "-k", "1"])
    assert r.exit_code == 2 and "-k must be >= 2" in r.output


def test_cli_exec(tmp_path):
    code = tmp_path / "prog.py"
    code.write_text("def add(a, b):\n    return a + b\n")
    test = tmp_path / "test.py"
    test.write_text("def check(candidate):\n    assert candidate(1, 2) == 3\n")
    r = runner.invoke(app, ["exec", "--code", str(code), "--entry", "add", "--test", str(test)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "passed"
    inputs = tmp_path / "inputs.json"
    inputs.write_text('[[1, 2], ["a", "b"], [1, "x"]]')
    r = runner.invoke(app, ["exec", "--code", str(code), "--entry", "add", "--inputs", str(inputs)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["status"] for x in rows] == ["ok", "ok", "exception"]
    assert rows[1]["output"] == "'ab'" and rows[2]["exception"] == "TypeError"
    # errors: one line, exit 2
    r = runner.invoke(app, ["exec", "--code", str(code)])
    assert r.exit_code == 2 and "exactly one of" in r.output
    inputs.write_text('{"a": 1}')
    r = runner.invoke(app, ["exec", "--code", str(code), "--entry", "add", "--inputs", str(inputs)])
    assert r.exit_code == 2 and "argument lists" in r.output
    r = runner.invoke(app, ["exec", "--code", str(tmp_path / "nope.py"), "--test", str(test)])
    assert r.exit_code == 2 and "no such file" in r.output


def test_cli_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("sample", "featurize", "fit", "evaluate", "exec"):
        assert cmd in r.output


def _toy_dataset(tmp_path, n=10):
    """Problems ``f(x) = x + c``; samples agree on a right or on a wrong program, or split."""
    problems, sets = [], []
    for i in range(n):
        c = i + 1
        prompt = f'def f(x: int) -> int:\n    """Return x + {c}.\n    >>> f(0)\n    {c}\n    """\n'
        hidden = f"def check(candidate):\n    for x in range(-3, 4):\n        assert candidate(x) == x + {c}\n"
        problems.append(CodeProblem(f"t/{i}", prompt, "f", [], hidden))
        right = f"def f(x):\n    return x + {c}\n"
        wrong = f"def f(x):\n    return x + {c} + (x > 2)\n"
        codes = [[wrong, wrong], [right, wrong], [right, right]][i % 3]
        texts = [f"```python\n{code}```" for code in codes]
        sets.append(SampleSet(f"t/{i}", prompt, texts, codes, [-0.5, -0.6]))
    save_problems_jsonl(problems, tmp_path / "problems.jsonl")
    save_sample_sets(sets, tmp_path / "samples.jsonl")
    return tmp_path / "problems.jsonl", tmp_path / "samples.jsonl"


def test_cli_featurize_fit_evaluate_without_rsa(tmp_path):
    """The CLI chain on the calibrator's API (extrinsic features only: no model needed)."""
    problems, samples = _toy_dataset(tmp_path)
    feats = tmp_path / "feats.npz"
    args = ["featurize", "--samples", str(samples), "-d", str(problems), "-o", str(feats)]
    r = runner.invoke(app, [*args, "--no-rsa", "--timeout", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--overwrite"])  # RSA (the default) needs the model
    assert r.exit_code == 2 and "--model" in r.output
    calib = tmp_path / "calib"
    r = runner.invoke(app, ["fit", "--train", str(feats), "-o", str(calib), "--epochs", "5"])
    assert r.exit_code == 0, r.output
    assert (calib / "calibrator.json").is_file()
    metrics = tmp_path / "m.json"
    ev = ["evaluate", "--calib", str(calib), "--test", str(feats), "-o", str(metrics)]
    r = runner.invoke(app, [*ev, "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    m = json.loads(metrics.read_text())["metrics"]
    assert 0 <= m["ece"] <= 1 and m["n"] == 10 and 0 <= m["aurc"] <= 1
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000
    r = runner.invoke(app, ev)
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(
        app, ["fit", "--train", str(tmp_path / "none.npz"), "-o", str(tmp_path / "c2")]
    )
    assert r.exit_code == 2 and "none.npz" in r.output
