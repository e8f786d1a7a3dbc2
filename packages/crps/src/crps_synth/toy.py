"""A synthetic domain where the whole CRPS pipeline runs offline: mod-10 chains with traps.

Problems come from a small grammar, e.g. ``"start 2, sub 3, 4 times."`` (one operation applied n
times: a tiny student needs no lookup of "operation n", only the previous step); the answer is the
chain's value mod 10. A solution is one step per application (``"2-3=9"``, ``"9-3=6"``, …) and a
final ``"answer \\boxed{3}"``. Three operations hide a **trap** (a typical mistake):

* ``borrow`` — ``sub k`` with value < k: the right step is ``2-3=9``; the trap writes ``2-3=1``;
* ``carry`` — ``add k`` with value + k ≥ 10: right ``7+5=2``; trap ``7+5=3``;
* ``tens`` — ``mul k`` with value · k ≥ 10: right ``4*3=2``; trap ``4*3=1`` (the tens digit).

:class:`ToyExplorer` is a stochastic step program (a :class:`~crps_synth.mcts.StepGenerator`): it falls
into a trap with probability ``trap_error``, errs elsewhere with ``slip``, sometimes continues from the
*right* value after a mistake (a lucky right answer on a flawed chain, as rejection sampling keeps),
and sometimes inserts a redundant ``recheck`` step (longer correct paths: soft negatives).

:class:`RuleAnalyst` is a deterministic :class:`~crps_synth.llm.ChatLLM` for both analyst prompts: as
analyst it diffs the two rendered trajectories, names the pivot step and the trap, and answers the
JSON critique; as synthesizer it re-derives the solution with the task's solver and inserts an
explicit **check** into the pivot step (``"2-3 check 12-3=9"`` instead of ``"2-3=9"``: the success
pattern made explicit, written inline so that step n still is operation n).
It tests the data-efficiency mechanism, not an LLM analyst's quality.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from crps_synth.steps import divergence_index

OPS = ("add", "sub", "mul")
_SYM = {"add": "+", "sub": "-", "mul": "*"}
_PROBLEM = re.compile(r"start (\d), (add|sub|mul) (\d), (\d+) times\.")
_STEP = re.compile(r"^(\d)([-+*])(\d)=(\d)$")


@dataclass(frozen=True)
class ToyProblem:
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def text(self) -> str:
        (op, k), n = self.ops[0], len(self.ops)
        if any(o != self.ops[0] for o in self.ops):
            raise ValueError(f"a toy problem applies one operation n times, got {self.ops}")
        return f"start {self.start}, {op} {k}, {n} times."

    @property
    def answer(self) -> str:
        return str(self.values()[-1])

    def values(self) -> list[int]:
        """The chain's values: start, then after each operation."""
        vals = [self.start]
        for op, k in self.ops:
            vals.append(apply(op, vals[-1], k))
        return vals

    def to_dict(self, pid: str) -> dict[str, str]:
        return {"id": pid, "problem": self.text, "gold": self.answer}


def apply(op: str, v: int, k: int) -> int:
    return {"add": v + k, "sub": v - k, "mul": v * k}[op] % 10


def trap_of(op: str, v: int, k: int) -> str | None:
    """The trap an operation hides at value ``v`` (None when it has none)."""
    if op == "sub" and v < k:
        return "borrow"
    if op == "add" and v + k >= 10:
        return "carry"
    if op == "mul" and v * k >= 10:
        return "tens"
    return None


def trap_value(op: str, v: int, k: int) -> int:
    """The typical wrong result at a trap."""
    kind = trap_of(op, v, k)
    if kind == "borrow":
        return k - v
    if kind == "carry":
        return (v + k + 1) % 10
    if kind == "tens":
        return (v * k) // 10
    raise ValueError(f"{op} {k} at value {v} has no trap")


def check_line(op: str, v: int, k: int) -> str:
    """The step with its explicit computation: ``2-3 check 12-3=9``, ``7+5 check 7+5=12=2``,
    ``4*3 check 4*3=12=2`` (the result is the last digit)."""
    if op == "sub":
        top = v + 10 if v < k else v
        return f"{v}-{k} check {top}-{k}={top - k}"
    full = v + k if op == "add" else v * k
    return f"{v}{_SYM[op]}{k} check {full}={full % 10}"


def step_text(v: int, op: str, k: int, result: int) -> str:
    return f"{v}{_SYM[op]}{k}={result}"


def solution_steps(
    problem: ToyProblem, check_at: set[int] | frozenset[int] = frozenset()
) -> list[str]:
    """The right solution; the operations whose index is in ``check_at`` written with a check."""
    vals = problem.values()
    steps = []
    for i, (op, k) in enumerate(problem.ops):
        if i in check_at:
            steps.append(check_line(op, vals[i], k))
        else:
            steps.append(step_text(vals[i], op, k, vals[i + 1]))
    steps.append(f"answer \\boxed{{{vals[-1]}}}")
    return steps


def parse_problem(text: str) -> ToyProblem:
    m = _PROBLEM.search(text)
    if not m:
        raise ValueError(
            f"not a toy problem (expected 'start D, OP D, N times.'), got {text[:80]!r}"
        )
    return ToyProblem(int(m.group(1)), ((m.group(2), int(m.group(3))),) * int(m.group(4)))


def trap_indices(problem: ToyProblem) -> list[int]:
    vals = problem.values()
    return [i for i, (op, k) in enumerate(problem.ops) if trap_of(op, vals[i], k)]


def make_problems(
    n: int,
    *,
    seed: int,
    min_ops: int = 3,
    max_ops: int = 5,
    exclude: set[str] | None = None,
    strict: bool = True,
) -> list[ToyProblem]:
    """``n`` distinct problems with ``min_ops``–``max_ops`` applications and at least one trap.

    The grammar is finite (start 1–9 × 21 operations × lengths): when no new problem turns up in
    5,000 draws, ``strict`` raises a ``ValueError`` and ``strict=False`` returns the ones found.
    """
    rng = random.Random(seed)
    out: list[ToyProblem] = []
    seen = set(exclude or ())
    misses = 0
    while len(out) < n:
        op = rng.choice(OPS)
        k = (
            rng.choice((3, 7, 9)) if op == "mul" else rng.randint(1, 9)
        )  # mul by 3/7/9 never sticks at 0
        p = ToyProblem(rng.randint(1, 9), ((op, k),) * rng.randint(min_ops, max_ops))
        if p.text in seen or not trap_indices(p):
            misses += 1
            if misses >= 5000:
                if strict:
                    raise ValueError(
                        f"asked for {n} distinct toy problems with {min_ops}-{max_ops} operations, "
                        f"but only {len(out)} new ones exist beside the {len(exclude or ())} excluded"
                    )
                break
            continue
        misses = 0
        seen.add(p.text)
        out.append(p)
    return out


class ToyExplorer:
    """A stochastic step program (see the module doc). ``temperature == 0`` never errs."""

    def __init__(
        self, trap_error: float = 0.5, slip: float = 0.03, lucky: float = 0.3, recheck: float = 0.1
    ):
        for name, v in (
            ("trap_error", trap_error),
            ("slip", slip),
            ("lucky", lucky),
            ("recheck", recheck),
        ):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
        self.trap_error, self.slip, self.lucky, self.recheck = trap_error, slip, lucky, recheck

    def _state(self, problem: ToyProblem, prefix: list[str]) -> tuple[int, int, bool, bool]:
        """(op index, current value, chain already wrong, last step was a recheck)."""
        vals = problem.values()
        i, v, wrong, last_recheck = 0, problem.start, False, False
        for s in prefix:
            m = _STEP.match(s.strip())
            if m:
                v = int(m.group(4))
                i += 1
                wrong = v != vals[i]
                last_recheck = False
            elif s.startswith("recheck"):
                last_recheck = True
        return i, v, wrong, last_recheck

    def _next(
        self, problem: ToyProblem, prefix: list[str], rng: random.Random, temperature: float
    ) -> str:
        i, v, wrong, last_recheck = self._state(problem, prefix)
        if i >= len(problem.ops):
            return f"answer \\boxed{{{v}}}"
        if temperature == 0:
            op, k = problem.ops[i]
            return step_text(v, op, k, apply(op, v, k))
        if i > 0 and not last_recheck and rng.random() < self.recheck:
            return f"recheck {v}={v}"
        if wrong and rng.random() < self.lucky:
            v = problem.values()[i]  # continues from the right value: a flawed chain
        op, k = problem.ops[i]
        right = apply(op, v, k)
        if trap_of(op, v, k) and rng.random() < self.trap_error:
            return step_text(v, op, k, trap_value(op, v, k))
        if rng.random() < self.slip:
            return step_text(v, op, k, (right + rng.choice((1, 9))) % 10)
        return step_text(v, op, k, right)

    def propose(
        self,
        problem: str,
        prefix: list[str],
        n: int,
        temperature: float,
        *,
        seed: int | None = None,
    ) -> list[str]:
        p, rng = parse_problem(problem), random.Random(seed)
        return [self._next(p, prefix, rng, temperature) for _ in range(n)]

    def rollout(
        self, problem: str, prefix: list[str], temperature: float, *, seed: int | None = None
    ) -> list[str]:
        p, rng = parse_problem(problem), random.Random(seed)
        steps = list(prefix)
        while not (steps and steps[-1].startswith("answer")) and len(steps) < 4 * len(p.ops) + 4:
            steps.append(self._next(p, steps, rng, temperature))
        return steps[len(prefix) :]


_BLOCK = re.compile(
    r"Trajectory ([AB]) \([^)]*\):\n(.*?)(?=\n\nTrajectory [AB] \(|\n\nCompare)", re.DOTALL
)
_CHECK_AT = re.compile(r"check before operation (\d+)")


def _steps_of(block: str) -> list[str]:
    return [
        re.sub(r"^\[\d+\] ", "", line)
        for line in block.strip().splitlines()
        if line.startswith("[")
    ]


class RuleAnalyst:
    """Deterministic analyst + synthesizer for the toy domain (see the module doc).

    ``pivot="diff"`` puts the check line at the divergence step (CRPS); ``pivot="random"`` at a
    random operation (the random-pivot control; seeded by the problem text); ``pivot="none"`` writes
    the plain solution (τ+ rewrite, no analysis used).
    """

    def __init__(self, pivot: str = "diff", seed: int = 0):
        if pivot not in ("diff", "random", "none"):
            raise ValueError(f"pivot must be 'diff', 'random' or 'none', got {pivot!r}")
        self.pivot = pivot
        self.seed = seed

    def chat(
        self, system: str, user: str, *, temperature: float = 0.0, max_tokens: int = 1024
    ) -> str:
        if "Trajectory A" in user:
            return self._critique(user)
        return self._synthesize(user)

    def _critique(self, user: str) -> str:
        problem = parse_problem(user)
        blocks = {m.group(1): _steps_of(m.group(2)) for m in _BLOCK.finditer(user)}
        a, b = blocks.get("A", []), blocks.get("B", [])
        div = divergence_index(a, b)
        op_index = sum(1 for s in a[:div] if _STEP.match(s))  # operations before the pivot
        b_step = b[div] if div < len(b) else ""
        vals = problem.values()
        if b_step.startswith("recheck") or op_index >= len(problem.ops):
            kind, do = "redundant", "go straight to the next operation"
        else:
            op, k = problem.ops[op_index]
            kind = trap_of(op, vals[op_index], k) or "slip"
            do = f"check before operation {op_index}: {check_line(op, vals[op_index], k)}"
        return json.dumps(
            {
                "divergence_step_index": div,
                "local_step_critique": {
                    "trajectory_a_logic": a[div] if div < len(a) else "",
                    "trajectory_b_logic": b_step,
                    "critique_of_difference": f"B makes a {kind} error at step {div}",
                },
                "global_strategic_analysis": f"A computes every operation exactly; B fails at a {kind} point",
                "synthesized_guidance": {"success_pattern": do, "failure_mode_to_avoid": kind},
            }
        )

    def _synthesize(self, user: str) -> str:
        from crps_synth.steps import format_steps

        problem = parse_problem(user)
        check: set[int] = set()
        if self.pivot == "diff":
            m = _CHECK_AT.search(user)
            if m:
                check = {int(m.group(1))}
        elif self.pivot == "random" and _CHECK_AT.search(user):
            check = {random.Random(f"{self.seed}:{user}").randrange(len(problem.ops))}
        return format_steps(solution_steps(problem, check))
