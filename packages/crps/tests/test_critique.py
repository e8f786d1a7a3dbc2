from __future__ import annotations

import json

import pytest

from crps_synth import (
    ContrastiveAnalyzer,
    ContrastivePair,
    CritiqueParseError,
    ScriptedChatLLM,
    Trajectory,
    parse_critique,
)

GOOD = {
    "divergence_step_index": 2,
    "local_step_critique": {
        "trajectory_a_logic": "a",
        "trajectory_b_logic": "b",
        "critique_of_difference": "c",
    },
    "global_strategic_analysis": "A checks the borrow",
    "synthesized_guidance": {
        "success_pattern": "borrow explicitly",
        "failure_mode_to_avoid": "sign error",
    },
}


def test_fenced_and_bare():
    text = "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nDone."
    for t in (text, json.dumps(GOOD), "prefix " + json.dumps(GOOD) + " suffix"):
        got = parse_critique(t)
        assert got["divergence_step_index"] == 2
        assert got["success_pattern"] == "borrow explicitly"
        assert got["local_step_critique"]["critique_of_difference"] == "c"


def test_raw_newlines_and_tabs_inside_strings():
    text = '{"divergence_step_index": 1, "global_strategic_analysis": "line one\nline\ttwo"}'
    assert parse_critique(text)["global_strategic_analysis"] == "line one\nline\ttwo"


def test_latex_backslashes():
    text = r'{"divergence_step_index": 0, "global_strategic_analysis": "use \frac{1}{2} and \sqrt{x}, not \beta"}'
    assert (
        parse_critique(text)["global_strategic_analysis"]
        == r"use \frac{1}{2} and \sqrt{x}, not \beta"
    )
    ok = r'{"divergence_step_index": 0, "global_strategic_analysis": "a\nb \"q\""}'
    assert parse_critique(ok)["global_strategic_analysis"] == 'a\nb "q"'  # valid escapes kept


def test_trailing_commas():
    text = '{"divergence_step_index": 3, "synthesized_guidance": {"success_pattern": "x", "failure_mode_to_avoid": "y",}, "global_strategic_analysis": "g",}'
    got = parse_critique(text)
    assert (got["divergence_step_index"], got["failure_mode_to_avoid"]) == (3, "y")


def test_truncated():
    full = json.dumps(GOOD)
    got = parse_critique(full[: full.index("synthesized_guidance") + 45])
    assert got["divergence_step_index"] == 2
    assert got["global_strategic_analysis"] == "A checks the borrow"
    assert (
        parse_critique('{"divergence_step_index": 4, "global_strategic_analysis":')[
            "divergence_step_index"
        ]
        == 4
    )


def test_regex_fallback_and_garbage():
    broken = (
        'divergence_step_index: 5 ... "global_strategic_analysis": "B forgot the carry" oops {{{'
    )
    got = parse_critique(broken)
    assert (
        got["divergence_step_index"] == 5
        and got["global_strategic_analysis"] == "B forgot the carry"
    )
    for garbage in (
        "",
        "I cannot help with that.",
        "{}",
        '{"divergence_step_index": -1}',
        "[1, 2]",
    ):
        assert parse_critique(garbage) is None
    with pytest.raises(TypeError):
        parse_critique(None)


def _pair(pos=("a", "b", "c"), neg=("a", "z", "x")):
    t = lambda s, ok: Trajectory(list(s), ok, float(ok), 1, len(s), 0.5, None)  # noqa: E731
    return ContrastivePair("problem", t(pos, True), t(neg, False), "hard", "p1", "7")


def test_analyzer_retries_then_drops_and_errors_on_rate():
    replies = iter(["garbage", "still garbage", json.dumps(GOOD)])
    llm = ScriptedChatLLM(lambda s, u: next(replies))
    an = ContrastiveAnalyzer(llm, max_retries=2)
    crit = an.analyze(_pair())
    assert crit is not None and llm.calls == 3 and an.n_bad_replies == 2
    assert crit.divergence_step_index == 1  # deterministic common prefix overrides the analyst's 2
    assert crit.llm_divergence_step_index == 2
    bad = ContrastiveAnalyzer(
        ScriptedChatLLM(lambda s, u: "no json"), max_retries=1, min_pairs_for_rate=4
    )
    with pytest.raises(CritiqueParseError, match="max_parse_failure_rate"):
        bad.batch_analyze([_pair()] * 4, max_workers=2)
    assert bad.n_pairs == 4 and bad.n_dropped == 4


def test_analyzer_clamps_without_override_and_prompt_names_trajectories():
    reply = json.dumps({**GOOD, "divergence_step_index": 99})
    an = ContrastiveAnalyzer(ScriptedChatLLM(lambda s, u: reply), override_divergence=False)
    crit = an.analyze(_pair())
    assert crit.divergence_step_index == 3
    user = an.prompt(_pair())
    assert "Trajectory A (correct)" in user and "[1] z" in user


def test_infrastructure_errors_propagate():
    def down(system, user):
        raise ConnectionError("server down")

    with pytest.raises(ConnectionError):
        ContrastiveAnalyzer(ScriptedChatLLM(down)).analyze(_pair())
