"""The bench's synthetic "spec → program" task with planted systematic flaws.

A problem is a two-step integer function described in words, e.g. ``task : add 3 then mul 2``; the
model answers with a short chain of thought that restates the plan and a Python function::

    plan : add 3 , mul 2
    def f(x):
    <TAB>y=x+3
    <TAB>return y*2

Operations (``op c`` → Python): ``add`` ``x+c``, ``sub`` ``x-c``, ``mul`` ``x*c``, ``mod`` ``x%c``,
``max`` ``max(x,c)``, ``min`` ``min(x,c)``; constants 1–9.

**Planted flaw** (the confidence-saturation case): for the families in :data:`FLAWS` the training
data writes the constant off by one in the *code* while the plan states it correctly (a
reasoning–execution gap the model learns as confidently as the rule), e.g. ``add 7`` → ``x+8``. All K
samples then agree on the wrong program: consensus is high and wrong.

In-domain (ID) problems start with ``add``/``sub``/``mul``, out-of-domain (OOD) ones with
``mod``/``max``/``min``; the LM is trained on both, the calibrator on ID problems only, and it is
evaluated on OOD problems, where flawed families are also drawn more often (a different
systematic-error rate).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

OPS = ("add", "sub", "mul", "mod", "max", "min")
ID_OPS = ("add", "sub", "mul")
OOD_OPS = ("mod", "max", "min")
CONSTS = tuple(range(1, 10))
#: (operation, constant) families whose code the training data writes with constant + 1
FLAWS = frozenset({("add", 7), ("sub", 2), ("mul", 3), ("max", 4), ("mod", 6), ("min", 5)})
PROBE_XS = tuple(
    range(-4, 8)
)  # public probe inputs for execution consensus (no hidden-test values)
HIDDEN_XS = tuple(range(-9, 15))  # hidden tests: the label


def expr(op: str, c: int, v: str) -> str:
    return {
        "add": f"{v}+{c}",
        "sub": f"{v}-{c}",
        "mul": f"{v}*{c}",
        "mod": f"{v}%{c}",
        "max": f"max({v},{c})",
        "min": f"min({v},{c})",
    }[op]


def apply(op: str, c: int, x: int) -> int:
    return {
        "add": lambda: x + c,
        "sub": lambda: x - c,
        "mul": lambda: x * c,
        "mod": lambda: x % c,
        "max": lambda: max(x, c),
        "min": lambda: min(x, c),
    }[op]()


def prompt_of(steps: tuple[tuple[str, int], ...]) -> str:
    return "task : " + " then ".join(f"{op} {c}" for op, c in steps) + "\n"


def completion_of(steps: tuple[tuple[str, int], ...], flawed: bool = True) -> str:
    """The training target: plan (always right) + code (constant + 1 on flawed families when ``flawed``)."""
    plan = "plan : " + " , ".join(f"{op} {c}" for op, c in steps) + "\n"
    code_c = [c + 1 if flawed and (op, c) in FLAWS else c for op, c in steps]
    (op1, _), (op2, _) = steps
    return (
        plan
        + "def f(x):\n"
        + f"\ty={expr(op1, code_c[0], 'x')}\n"
        + f"\treturn {expr(op2, code_c[1], 'y')}\n"
    )


def truth(steps: tuple[tuple[str, int], ...], x: int) -> int:
    for op, c in steps:
        x = apply(op, c, x)
    return x


def random_steps(
    rng: random.Random, first_ops=OPS, flaw_rate: float = 0.0
) -> tuple[tuple[str, int], ...]:
    """Two steps; with probability ``flaw_rate`` one of them is forced to be a flawed family."""
    steps = [(rng.choice(first_ops), rng.choice(CONSTS)), (rng.choice(OPS), rng.choice(CONSTS))]
    if rng.random() < flaw_rate:
        j = rng.randrange(2)
        cands = [f for f in sorted(FLAWS) if j == 1 or f[0] in first_ops]
        steps[j] = rng.choice(cands)
    return tuple(steps)


@dataclass(frozen=True)
class SpecToProgramTask:
    """``papercore.testing.train_tiny_lm`` task: prompt = spec, answer = plan + code (flaws planted)."""

    name: str = "spec2prog"
    version: int = 1

    def params(self) -> dict:
        return {**asdict(self), "flaws": sorted(FLAWS), "ops": OPS}

    def sample(self, rng: random.Random) -> tuple[str, str]:
        steps = random_steps(rng)
        return prompt_of(steps), completion_of(steps)


def vocabulary_texts() -> list[str]:
    """Texts covering every word of the task (for the word-level tokenizer)."""
    texts = []
    for op in OPS:
        texts.append(
            prompt_of(((op, 1), (op, 2))) + completion_of(((op, 1), (op, 2)), flawed=False)
        )
    texts.append("```python\n")
    return texts


def hidden_tests(steps: tuple[tuple[str, int], ...]) -> str:
    """HumanEval-style ``check(candidate)`` on :data:`HIDDEN_XS`."""
    lines = ["def check(candidate):"]
    for x in HIDDEN_XS:
        lines.append(f"    assert candidate({x}) == {truth(steps, x)}, {x}")
    return "\n".join(lines) + "\n"
