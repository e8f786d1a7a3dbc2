"""Consensus features on hand-made programs, selection, probe inputs, labels and the hidden-test wall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosym_cal.errors import TooFewSamplesError
from neurosym_cal.extrinsic import (
    FEATURE_NAMES,
    cluster_signatures,
    consensus_statistics,
    extrinsic_features,
    label_problem,
    label_problems,
    probe_inputs_for,
    select_program,
)
from neurosym_cal.problems import CodeProblem
from neurosym_cal.sampling import SampleSet
from neurosym_cal.sandbox import Sandbox

PROMPT = (
    'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
)
HIDDEN = (
    "def check(candidate):\n    assert candidate(5, 5) == 10\n    assert candidate(-1, 1) == 0\n"
)

RIGHT_1 = "def add(a, b):\n    return a + b\n"
RIGHT_2 = "def add(a, b):\n    return b + a\n"
RIGHT_3 = "def add(a, b):\n    s = a\n    s += b\n    return s\n"
WRONG = "def add(a, b):\n    return a - b\n"
RAISES = "def add(a, b):\n    raise ValueError('no')\n"


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox(timeout_s=2.0, call_timeout_s=0.25)


def _problem(public=("assert add(2, 2) == 4",), hidden=HIDDEN) -> CodeProblem:
    return CodeProblem("t/add", PROMPT, "add", list(public), hidden)


def _samples(codes, logprobs=None) -> SampleSet:
    return SampleSet("t/add", PROMPT, [""] * len(codes), list(codes), logprobs or [])


def test_hand_made_clusters_and_entropy(sb):
    # 3 equivalent + 2 equivalent wrong + 1 raising + 1 without code + 1 that does not compile
    codes = [RIGHT_1, RIGHT_2, RIGHT_3, WRONG, WRONG, RAISES, None, "def add(a, b:\n"]
    f = extrinsic_features(_problem().public_view(), _samples(codes), sb)
    assert f.clusters == [[0, 1, 2], [3, 4], [5], [6], [7]]
    k = 8
    p = np.array([3, 2, 1, 1, 1]) / k
    d = f.as_dict()
    assert d["sc_top"] == pytest.approx(3 / 8)
    assert d["sc_margin"] == pytest.approx(1 / 8)
    assert d["cluster_entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(k))
    assert d["n_clusters"] == pytest.approx((5 - 1) / (k - 1))
    assert d["syntax_rate"] == pytest.approx(2 / 8)
    m = len(f.probe_inputs)
    assert m >= 3  # public-test args, the >>> example, random ones
    assert d["crash_rate"] == pytest.approx(m / (k * m))  # RAISES fails on every input
    assert d["timeout_rate"] == 0.0
    assert d["public_pass"] == 1.0 and d["public_tests_missing"] == 0.0
    assert d["sel_in_top"] == 1.0 and d["probe_inputs_missing"] == 0.0
    assert f.selected_index == 0
    assert f.names == FEATURE_NAMES and f.values.shape == (len(FEATURE_NAMES),)
    assert np.all((f.values >= 0) & (f.values <= 1))


def test_unanimous_wrong_program_saturates(sb):
    """Confidence saturation: 4 identical wrong programs give sc_top = 1, entropy 0."""
    f = extrinsic_features(_problem().public_view(), _samples([WRONG] * 4), sb)
    d = f.as_dict()
    assert d["sc_top"] == 1.0 and d["sc_margin"] == 1.0
    assert d["cluster_entropy"] == 0.0 and d["n_clusters"] == 0.0
    assert d["public_pass"] == 0.0  # add(2, 2) == 0 with subtraction
    assert not label_problem(_problem(), WRONG, sb)
    assert label_problem(_problem(), RIGHT_1, sb)


def test_timeouts_count(sb):
    loop = "def add(a, b):\n    while True:\n        pass\n"
    f = extrinsic_features(
        _problem().public_view(), _samples([RIGHT_1, loop]), sb, probe_inputs=[(1, 2), (3, 4)]
    )
    assert f["timeout_rate"] == pytest.approx(2 / 4)
    assert f.clusters == [[0], [1]]
    assert f.signatures[1] == ("TIMEOUT", "TIMEOUT")


def test_selection_ties_and_logprob():
    clusters = [[0, 2], [1, 3], [4]]
    lps = [-1.0, -0.1, -1.0, -0.2, -0.01]
    has = [True] * 5
    # equal-size clusters: the one with the higher mean log-prob, its best member
    assert select_program(clusters, lps, has) == 1
    assert select_program(clusters, [None] * 5, has) == 0
    assert select_program(clusters, lps, has, selection="logprob") == 4
    with pytest.raises(ValueError, match="selection"):
        select_program(clusters, lps, has, selection="best")  # type: ignore[arg-type]


def test_logprob_selection_can_leave_the_top_cluster(sb):
    codes = [RIGHT_1, RIGHT_2, WRONG]
    f = extrinsic_features(
        _problem().public_view(),
        _samples(codes, [-1.0, -1.0, -0.1]),
        sb,
        probe_inputs=[(1, 2)],
        selection="logprob",
    )
    assert f.selected_index == 2 and f["sel_in_top"] == 0.0 and f.selected_logprob == -0.1


def test_cluster_helpers():
    assert cluster_signatures([("a",), None, ("a",), ("b",), None]) == [[0, 2], [1], [3], [4]]
    s = consensus_statistics([[0, 1], [2, 3]], 4)
    assert s["sc_top"] == 0.5 and s["sc_margin"] == 0.0
    assert s["cluster_entropy"] == pytest.approx(math.log(2) / math.log(4))
    with pytest.raises(TooFewSamplesError, match="k >= 2"):
        consensus_statistics([[0]], 1)


def test_k_below_two_and_wrong_inputs(sb):
    with pytest.raises(TooFewSamplesError, match="k >= 2"):
        extrinsic_features(_problem().public_view(), _samples([RIGHT_1]), sb)
    with pytest.raises(TypeError, match="public_view"):
        extrinsic_features(_problem(), _samples([RIGHT_1, RIGHT_2]), sb)  # type: ignore[arg-type]
    other = SampleSet("t/other", PROMPT, ["", ""], [RIGHT_1, RIGHT_2])
    with pytest.raises(ValueError, match="t/other"):
        extrinsic_features(_problem().public_view(), other, sb)


def test_no_probe_inputs_falls_back_to_ast(sb):
    problem = CodeProblem("t/add", "Add two numbers.", "add", [], HIDDEN)  # no signature, no tests
    docstring_variant = 'def add(a, b):\n    """Sum."""\n    return a + b\n'
    f = extrinsic_features(problem.public_view(), _samples([RIGHT_1, docstring_variant, WRONG]), sb)
    assert f["probe_inputs_missing"] == 1.0
    assert f.clusters == [[0, 1], [2]]
    assert f["public_pass"] == 0.5 and f["public_tests_missing"] == 1.0


def test_probe_inputs_are_deterministic_and_typed():
    prompt = (
        "from typing import List, Dict, Optional\n"
        "def f(xs: List[int], s: str, d: Dict[str, float], o: Optional[bool], t: tuple[int, str]):\n"
        '    """Example:\n    >>> f([1], "a", {}, None, (1, "x"))\n    1\n    """\n'
    )
    p = CodeProblem("t/f", prompt, "f", [], "def check(c):\n    pass\n").public_view()
    a = probe_inputs_for(p, seed=3)
    assert a == probe_inputs_for(p, seed=3) and a != probe_inputs_for(p, seed=4)
    assert a[0] == ([1], "a", {}, None, (1, "x"))
    for xs, s, d, o, t in a:
        assert isinstance(xs, list) and all(isinstance(x, int) for x in xs)
        assert isinstance(s, str) and isinstance(d, dict)
        assert o is None or isinstance(o, bool)
        assert isinstance(t, tuple) and len(t) == 2
    assert len(probe_inputs_for(p, max_probes=3)) == 3


class RecordingSandbox(Sandbox):
    """A real sandbox that records every string it is asked to execute."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.seen: list[str] = []

    def run(self, program, test, entry_point=None):
        self.seen += [str(program), str(test), str(entry_point)]
        return super().run(program, test, entry_point)

    def call(self, program, entry_point, inputs):
        self.seen += [str(program), str(entry_point), repr(inputs)]
        return super().call(program, entry_point, inputs)


def test_hidden_tests_never_reach_feature_extraction():
    marker = "HIDDEN_TEST_MARKER_7f3a9c"
    hidden = f"def check(candidate):\n    # {marker}\n    assert candidate(5, 5) == 10\n"
    problem = CodeProblem("t/add", PROMPT, "add", ["assert add(2, 2) == 4"], hidden)
    problem.meta["hidden_note"] = marker
    sb = RecordingSandbox(timeout_s=2.0, call_timeout_s=0.25)
    f = extrinsic_features(problem.public_view(), _samples([RIGHT_1, WRONG, RIGHT_2]), sb)
    assert sb.seen, "the recording sandbox was not used"
    assert not any(marker in s for s in sb.seen)
    assert marker not in repr(f) and marker not in repr(f.probe_inputs)
    assert not hasattr(problem.public_view(), "hidden_tests")
    # the control: labels do execute the hidden tests through the same instrument
    label_problem(problem, RIGHT_1, sb)
    assert any(marker in s for s in sb.seen)


def test_label_problems_batch(sb):
    problem = _problem()
    assert label_problems([problem] * 3, [RIGHT_1, None, WRONG], sb) == [True, False, False]
    with pytest.raises(ValueError, match="programs"):
        label_problems([problem], [], sb)
