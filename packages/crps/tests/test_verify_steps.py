from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from crps_synth import MathVerifier, divergence_index, extract_boxed, parse_steps, segment_steps


@pytest.fixture(scope="module")
def verifier():
    return MathVerifier()


def test_equivalences(verifier):
    assert verifier.verify_text("so the answer is \\boxed{1/2}", "0.5") == ("1/2", True)
    assert verifier.equivalent("\\frac{1}{2}", "0.5")
    assert verifier.verify_text("Step 3: \\boxed{2^{10}}", "1024")[1]
    assert not verifier.equivalent("1023", "1024")


def test_unboxed_answer_rejected_and_nested_braces(verifier):
    assert verifier.verify_text("the answer is 1024", "1024") == (None, False)
    assert extract_boxed("x \\boxed{\\frac{1}{\\sqrt{2}}} and") == "\\frac{1}{\\sqrt{2}}"
    assert extract_boxed("\\boxed{1} then \\boxed{2}") == "2"
    assert extract_boxed("\\boxed{unclosed") is None


def test_works_inside_a_thread_pool(verifier):
    cases = [
        ("\\boxed{1/2}", "0.5", True),
        ("\\boxed{2^{10}}", "1024", True),
        ("\\boxed{3}", "4", False),
    ] * 4
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda c: verifier.verify_text(c[0], c[1])[1], cases))
    assert got == [c[2] for c in cases]
    assert verifier.timeouts == 0


def test_unparsable_gold_warns_and_string_matches(verifier, caplog):
    with caplog.at_level(logging.WARNING):
        assert not verifier.gold_parses("A@B")
        assert verifier.equivalent(" A@B ", "A@B")
        assert not verifier.equivalent("A@C", "A@B")
    assert sum("not parsable" in r.message for r in caplog.records) == 1  # once per gold
    with pytest.raises(ValueError, match="gold"):
        verifier.equivalent("1", " ")


def test_parse_steps_markers():
    assert parse_steps("Step 1: a\nStep 2. b") == ["a", "b"]
    assert parse_steps("Sure!\n**Step 1:** a = 1\n**Step 2:** \\boxed{1}") == [
        "a = 1",
        "\\boxed{1}",
    ]
    assert parse_steps("just one answer \\boxed{3}") == ["just one answer \\boxed{3}"]
    assert parse_steps("  ") == []


def test_segment_steps_released_protocol():
    text = "Step 1: x = 2\n\nStep 2: so $a\nb$ holds\nThus \\boxed{2}"
    assert segment_steps(text) == ["x = 2", "so $a\nb$ holds", "Thus \\boxed{2}"]
    long = "Therefore, " + "w " * 10 + "end. Thus, " + "v " * 10
    assert segment_steps(long, max_step_words=12)[1].startswith("Thus,")


def test_divergence_index():
    assert divergence_index(["a", "b", "c"], ["A.", " b ", "x"]) == 2
    assert divergence_index(["a"], ["a", "b"]) == 1
