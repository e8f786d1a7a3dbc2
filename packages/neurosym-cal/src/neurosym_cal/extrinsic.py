"""Extrinsic symbolic-consensus features (spec §2.1) and hidden-test labels.

Feature extraction (:func:`extrinsic_features`) takes a :class:`~neurosym_cal.problems.PublicProblem`
— a class with no hidden-test attribute — so hidden tests cannot reach it; labels
(:func:`label_problem`, at the end of this module) take the full
:class:`~neurosym_cal.problems.CodeProblem` and are the only place hidden tests are executed.

Procedure (spec §2.1):

1. Probe inputs ``U`` (:func:`probe_inputs_for`): the argument tuples of the entry-point calls in
   the public tests, then in the prompt's ``>>>`` examples, then type-directed random inputs from
   the signature's annotations (ints in [-10, 10], floats, short strings / lists / dicts; seeded by
   ``seed`` and the task id), deduplicated, at most ``max_probes``.
2. Every sampled program runs on every input in the sandbox (one subprocess per program); its
   signature is the tuple of per-call tokens ``OUT:<repr>`` / ``EXC:<type>`` / ``TIMEOUT`` /
   ``MEMORY`` / ``CRASH``.
3. Programs with identical signatures form a cluster. A sample without code (or that does not
   compile) is a singleton cluster of its own: failing to write a program is not agreement. Clusters
   are sorted by size (ties: first member). ``p_i = |C_i| / K``.
4. Features, all in [0, 1]:

   ========================  =====================================================================
   ``sc_top``                ``p_1`` (self-consistency confidence)
   ``sc_margin``             ``p_1 - p_2`` (``p_2 = 0`` with one cluster)
   ``cluster_entropy``       ``-Σ p_i log p_i / log K``
   ``n_clusters``            ``(r - 1) / (K - 1)``
   ``crash_rate``            fraction of the ``K × m`` executions that raised, crashed or ran out of memory
   ``timeout_rate``          fraction of the ``K × m`` executions that timed out
   ``syntax_rate``           fraction of samples without code or that do not compile
   ``public_pass``           fraction of public tests the selected program passes (0.5 when none)
   ``public_tests_missing``  1 when the problem has no public tests
   ``sel_in_top``            1 when the selected program is in the largest cluster
   ``probe_inputs_missing``  1 when no probe input could be built (then programs are clustered by
                             their normalised AST: ``ast.dump`` without docstrings)
   ========================  =====================================================================

Selection (``selection="consensus"``, the spec's default): a member of the largest cluster; ties
between equally large clusters go to the cluster with the highest mean log-prob, and inside the
cluster to the member with the highest log-prob (first index when log-probs are unknown).
``selection="logprob"`` takes the compilable sample with the highest log-prob (``sel_in_top`` can
then be 0).

Not implemented from the spec: re-running programs to flag non-determinism (``NONDET``); programs
are run once (``PYTHONHASHSEED=0`` fixes set / dict-of-str ordering).
"""

from __future__ import annotations

import ast
import logging
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from neurosym_cal.errors import TooFewSamplesError
from neurosym_cal.problems import CodeProblem, PublicProblem
from neurosym_cal.sampling import SampleSet
from neurosym_cal.sandbox import CallResult, Sandbox

logger = logging.getLogger(__name__)

FEATURE_NAMES: tuple[str, ...] = (
    "sc_top",
    "sc_margin",
    "cluster_entropy",
    "n_clusters",
    "crash_rate",
    "timeout_rate",
    "syntax_rate",
    "public_pass",
    "public_tests_missing",
    "sel_in_top",
    "probe_inputs_missing",
)


@dataclass
class ConsensusFeatures:
    """Extrinsic features of one problem's K samples.

    ``values`` follows ``names`` (:data:`FEATURE_NAMES`); ``clusters`` are lists of sample indices,
    largest first; ``signatures[k]`` is sample k's execution signature; ``selected_index`` is the
    chosen sample ``c*``; ``selected_logprob`` its mean token log-prob (``None`` when unknown).
    """

    task_id: str
    names: tuple[str, ...]
    values: np.ndarray
    selected_index: int
    clusters: list[list[int]]
    signatures: list[tuple[str, ...]] = field(repr=False)
    probe_inputs: list[tuple] = field(repr=False)
    selected_logprob: float | None = None

    def as_dict(self) -> dict[str, float]:
        """``{name: value}``."""
        return {n: float(v) for n, v in zip(self.names, self.values, strict=True)}

    def __getitem__(self, name: str) -> float:
        return self.as_dict()[name]


# ---------------------------------------------------------------------------- probe inputs
def _call_args(expr: str, entry_point: str) -> list[tuple]:
    """Literal argument tuples of every ``entry_point(...)`` call in ``expr``."""
    try:
        tree = ast.parse(expr)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == entry_point
            and not node.keywords
        ):
            try:
                found.append(tuple(ast.literal_eval(a) for a in node.args))
            except (ValueError, SyntaxError, TypeError):
                continue
    return found


def _signature(prompt: str, entry_point: str) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return node  # type: ignore[return-value]
    return None


def _random_value(ann: ast.expr | None, rng: random.Random, depth: int = 0) -> Any:
    """A random value of the annotated type (int when unknown)."""
    name = ""
    inner: list[ast.expr] = []
    if isinstance(ann, ast.Name):
        name = ann.id
    elif isinstance(ann, ast.Attribute):
        name = ann.attr
    elif isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            return _random_value(ast.parse(ann.value, mode="eval").body, rng, depth)
        except SyntaxError:
            name = ""
    elif isinstance(ann, ast.Subscript):
        base = ann.value
        name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
        sl = ann.slice
        inner = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
    elif isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):  # X | None
        opts = [
            a
            for a in (ann.left, ann.right)
            if not (isinstance(a, ast.Constant) and a.value is None)
        ]
        return _random_value(opts[0] if opts else None, rng, depth)
    name = name.lower()
    if depth > 2:
        return rng.randint(-10, 10)
    if name == "float":
        return round(rng.uniform(-10, 10), 2)
    if name == "bool":
        return rng.random() < 0.5
    if name == "str":
        return "".join(rng.choice("abcxyz AB01") for _ in range(rng.randint(0, 6)))
    if name in ("list", "sequence", "iterable", "set", "frozenset"):
        elem = inner[0] if inner else None
        vals = [_random_value(elem, rng, depth + 1) for _ in range(rng.randint(0, 5))]
        return set(vals) if name in ("set", "frozenset") else vals
    if name == "tuple":
        elems = [e for e in inner if not (isinstance(e, ast.Constant) and e.value is Ellipsis)]
        if len(inner) == 2 and isinstance(inner[1], ast.Constant) and inner[1].value is Ellipsis:
            return tuple(_random_value(inner[0], rng, depth + 1) for _ in range(rng.randint(0, 4)))
        return tuple(_random_value(e, rng, depth + 1) for e in elems) if elems else ()
    if name in ("dict", "mapping"):
        kt, vt = [*inner, None, None][:2]
        return {
            _random_value(kt, rng, depth + 1): _random_value(vt, rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    if name == "optional":
        return (
            None if rng.random() < 0.2 else _random_value(inner[0] if inner else None, rng, depth)
        )
    if name == "union" and inner:
        return _random_value(rng.choice(inner), rng, depth)
    return rng.randint(-10, 10)


def _hashable_repr(args: tuple) -> str:
    return repr(args)


def probe_inputs_for(
    problem: PublicProblem, max_probes: int = 20, n_random: int = 8, seed: int = 0
) -> list[tuple]:
    """Probe inputs of a problem from its public material only (see the module doc).

    Random inputs are drawn only when the signature is found in the prompt (their arity must be
    right); their seed is ``seed`` mixed with the task id, so a problem always gets the same ones.
    """
    if not isinstance(problem, PublicProblem):
        raise TypeError(
            f"probe_inputs_for takes a PublicProblem (use CodeProblem.public_view()), got {type(problem).__name__}"
        )
    entry = problem.entry_point
    found: list[tuple] = []
    for test in problem.public_tests:
        found += _call_args(test, entry)
    for line in problem.prompt.splitlines():
        s = line.strip()
        if s.startswith(">>>"):
            found += _call_args(s[3:].strip(), entry)
    sig = _signature(problem.prompt, entry)
    if sig is not None and n_random > 0:
        params = [a for a in sig.args.posonlyargs + sig.args.args if a.arg not in ("self", "cls")]
        rng = random.Random((zlib.crc32(problem.task_id.encode()) << 8) ^ seed)
        for _ in range(n_random):
            found.append(tuple(_random_value(p.annotation, rng) for p in params))
    out, seen = [], set()
    for args in found:
        key = _hashable_repr(args)
        if key in seen:
            continue
        seen.add(key)
        out.append(args)
        if len(out) >= max_probes:
            break
    return out


# ---------------------------------------------------------------------------- clustering
def _compiles(code: str | None) -> bool:
    if code is None:
        return False
    try:
        compile(code, "<sample>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _ast_signature(code: str) -> tuple[str, ...]:
    """Normalised AST dump (docstrings removed), for clustering without probe inputs."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return (ast.dump(tree, annotate_fields=False),)


def cluster_signatures(signatures: Sequence[tuple[str, ...] | None]) -> list[list[int]]:
    """Group indices by identical signature; ``None`` (no program) is always a singleton.

    Clusters are sorted by size (largest first), ties by their first index.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    singles: list[list[int]] = []
    for i, sig in enumerate(signatures):
        if sig is None:
            singles.append([i])
        else:
            groups.setdefault(sig, []).append(i)
    clusters = list(groups.values()) + singles
    clusters.sort(key=lambda c: (-len(c), c[0]))
    return clusters


def consensus_statistics(clusters: Sequence[Sequence[int]], k: int) -> dict[str, float]:
    """``sc_top, sc_margin, cluster_entropy, n_clusters`` of clusters over ``k`` samples (spec §2.1)."""
    if k < 2:
        raise TooFewSamplesError(f"consensus features need k >= 2 samples, got k={k}")
    sizes = sorted((len(c) for c in clusters), reverse=True)
    if sum(sizes) != k:
        raise ValueError(f"clusters cover {sum(sizes)} samples, expected k={k}")
    p = np.array(sizes, dtype=np.float64) / k
    entropy = float(-(p * np.log(p)).sum() / math.log(k))
    return {
        "sc_top": float(p[0]),
        "sc_margin": float(p[0] - (p[1] if len(p) > 1 else 0.0)),
        "cluster_entropy": max(0.0, entropy),
        "n_clusters": (len(sizes) - 1) / (k - 1),
    }


def _lp(x: float | None) -> float:
    return -math.inf if x is None or not math.isfinite(x) else float(x)


def select_program(
    clusters: Sequence[Sequence[int]],
    logprobs: Sequence[float | None],
    has_code: Sequence[bool],
    selection: Literal["consensus", "logprob"] = "consensus",
) -> int:
    """Index of the selected sample ``c*`` (see the module doc)."""
    if selection == "logprob":
        cands = [i for i, ok in enumerate(has_code) if ok] or list(range(len(has_code)))
        return max(cands, key=lambda i: (_lp(logprobs[i]), -i))
    if selection != "consensus":
        raise ValueError(f"selection must be 'consensus' or 'logprob', got {selection!r}")
    top = len(clusters[0])
    tied = [c for c in clusters if len(c) == top]
    if len(tied) > 1:
        with_code = [c for c in tied if has_code[c[0]]] or tied

        def mean_lp(c: Sequence[int]) -> float:
            vals = [_lp(logprobs[i]) for i in c]
            return -math.inf if any(v == -math.inf for v in vals) else sum(vals) / len(vals)

        best = max(mean_lp(c) for c in with_code)
        tied = [c for c in with_code if mean_lp(c) == best]
    chosen = tied[0]
    return max(chosen, key=lambda i: (_lp(logprobs[i]), -i))


# ---------------------------------------------------------------------------- features
def extrinsic_features(
    problem: PublicProblem,
    samples: SampleSet,
    sandbox: Sandbox,
    probe_inputs: list[tuple] | None = None,
    *,
    max_probes: int = 20,
    n_random: int = 8,
    seed: int = 0,
    selection: Literal["consensus", "logprob"] = "consensus",
) -> ConsensusFeatures:
    """Consensus features of ``samples`` for ``problem`` (public view only). See the module doc.

    Raises ``TypeError`` for a :class:`~neurosym_cal.problems.CodeProblem` (pass
    ``problem.public_view()``), :class:`~neurosym_cal.errors.TooFewSamplesError` for K < 2.
    """
    if isinstance(problem, CodeProblem) or not isinstance(problem, PublicProblem):
        raise TypeError(
            "extrinsic_features takes a PublicProblem so hidden tests cannot reach the features; "
            f"call problem.public_view() (got {type(problem).__name__})"
        )
    if not isinstance(samples, SampleSet):
        raise TypeError(f"samples must be a SampleSet, got {type(samples).__name__}")
    if samples.task_id != problem.task_id:
        raise ValueError(
            f"samples are for task {samples.task_id!r} but the problem is {problem.task_id!r}"
        )
    k = samples.k
    if k < 2:
        raise TooFewSamplesError(
            f"{problem.task_id}: consensus features need k >= 2 samples, got k={k}"
        )
    if probe_inputs is None:
        probe_inputs = probe_inputs_for(
            problem, max_probes=max_probes, n_random=n_random, seed=seed
        )
    probe_inputs = list(probe_inputs)
    has_code = [_compiles(c) for c in samples.codes]
    m = len(probe_inputs)

    crash = timeout = 0
    signatures: list[tuple[str, ...] | None] = [None] * k
    if m:
        runnable = [i for i in range(k) if has_code[i]]
        results = sandbox.call_batch(
            [(samples.codes[i], problem.entry_point, probe_inputs) for i in runnable]
        )
        for i, res in zip(runnable, results, strict=True):
            if all(r.status == "syntax" for r in res):  # compiled here, not there (e.g. null bytes)
                has_code[i] = False
                continue
            signatures[i] = tuple(r.signature for r in res)
            crash += sum(r.status in ("exception", "crash", "memory") for r in res)
            timeout += sum(r.status == "timeout" for r in res)
    else:
        logger.info("%s: no probe inputs; clustering by normalised AST", problem.task_id)
        for i in range(k):
            if has_code[i]:
                signatures[i] = _ast_signature(samples.codes[i])  # type: ignore[arg-type]

    clusters = cluster_signatures(signatures)
    stats = consensus_statistics(clusters, k)
    sel = select_program(clusters, samples.logprobs, has_code, selection)

    n_public = len(problem.public_tests)
    if n_public and has_code[sel]:
        runs = sandbox.run_batch([(samples.codes[sel], t) for t in problem.public_tests])
        public_pass = sum(r.passed for r in runs) / n_public
    elif n_public:
        public_pass = 0.0
    else:
        public_pass = 0.5

    feats = {
        **stats,
        "crash_rate": crash / (k * m) if m else 0.0,
        "timeout_rate": timeout / (k * m) if m else 0.0,
        "syntax_rate": sum(not h for h in has_code) / k,
        "public_pass": public_pass,
        "public_tests_missing": 0.0 if n_public else 1.0,
        "sel_in_top": 1.0 if sel in clusters[0] else 0.0,
        "probe_inputs_missing": 0.0 if m else 1.0,
    }
    return ConsensusFeatures(
        task_id=problem.task_id,
        names=FEATURE_NAMES,
        values=np.array([feats[n] for n in FEATURE_NAMES], dtype=np.float64),
        selected_index=sel,
        clusters=clusters,
        signatures=[s if s is not None else ("NO_PROGRAM",) for s in signatures],
        probe_inputs=probe_inputs,
        selected_logprob=samples.logprobs[sel],
    )


# ---------------------------------------------------------------------------- labels (hidden tests)
def label_problem(problem: CodeProblem, program: str | None, sandbox: Sandbox) -> bool:
    """Whether ``program`` passes the problem's hidden tests (the correctness label ``z``).

    ``None`` (no code) is ``False``. A sandbox failure raises
    :class:`~neurosym_cal.errors.SandboxError`; it never becomes a label.
    """
    if not isinstance(problem, CodeProblem):
        raise TypeError(f"label_problem needs the full CodeProblem, got {type(problem).__name__}")
    if program is None:
        return False
    return sandbox.run(program, problem.hidden_tests, problem.entry_point).passed


def label_problems(
    problems: Sequence[CodeProblem], programs: Sequence[str | None], sandbox: Sandbox
) -> list[bool]:
    """:func:`label_problem` for many problems, run in parallel (order kept)."""
    if len(problems) != len(programs):
        raise ValueError(f"{len(problems)} problems but {len(programs)} programs")
    for p in problems:
        if not isinstance(p, CodeProblem):
            raise TypeError(f"label_problems needs CodeProblem objects, got {type(p).__name__}")
    idx = [i for i, prog in enumerate(programs) if prog is not None]
    runs = sandbox.run_batch(
        [(programs[i], problems[i].hidden_tests, problems[i].entry_point) for i in idx]
    )
    labels = [False] * len(problems)
    for i, r in zip(idx, runs, strict=True):
        labels[i] = r.passed
    return labels


__all__ = [
    "FEATURE_NAMES",
    "CallResult",
    "ConsensusFeatures",
    "cluster_signatures",
    "consensus_statistics",
    "extrinsic_features",
    "label_problem",
    "label_problems",
    "probe_inputs_for",
    "select_program",
]
