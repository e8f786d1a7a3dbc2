from __future__ import annotations

import json

import pytest

from crps_synth import (
    MCTS,
    ContrastiveAnalyzer,
    ContrastivePairSampler,
    CRPSPipeline,
    MCTSConfig,
    PathSynthesizer,
    ProblemError,
    ScriptedChatLLM,
    best_path_baseline,
    rejection_sampling_baseline,
)
from crps_synth import pipeline as stages
from crps_synth.steps import format_steps
from crps_synth.toy import ToyExplorer, parse_problem, solution_steps
from crps_synth.verify import StringVerifier

CRITIQUE = json.dumps(
    {
        "divergence_step_index": 1,
        "local_step_critique": {
            "trajectory_a_logic": "a",
            "trajectory_b_logic": "b",
            "critique_of_difference": "carry",
        },
        "global_strategic_analysis": "compute each operation exactly",
        "synthesized_guidance": {
            "success_pattern": "write out the carry",
            "failure_mode_to_avoid": "off by one",
        },
    }
)


def scripted(system: str, user: str) -> str:
    """Canned analyst: the same critique for every pair; the solver's solution for every synthesis."""
    if "Trajectory A" in user:
        return CRITIQUE
    return "Here it is.\n" + format_steps(solution_steps(parse_problem(user)))


def _parts(verifier=None, llm=None, seed=0):
    verifier = verifier or StringVerifier()
    llm = llm or ScriptedChatLLM(scripted)
    return (
        MCTS(ToyExplorer(), verifier, MCTSConfig(num_rollouts=10)),
        ContrastivePairSampler(k=10, hard_ratio=0.7, seed=seed),
        ContrastiveAnalyzer(llm),
        PathSynthesizer(llm, verifier),
        verifier,
    )


def test_bad_problem_input():
    with pytest.raises(ProblemError, match="gold"):
        stages.normalize_problems([{"id": "a", "problem": "start 1; 1 add 2."}])
    with pytest.raises(ProblemError, match="empty"):
        stages.normalize_problems([])
    with pytest.raises(ProblemError, match="duplicate"):
        stages.normalize_problems(
            [{"id": 1, "problem": "x", "gold": "1"}, {"id": 1, "problem": "y", "gold": "2"}]
        )
    assert issubclass(ProblemError, ValueError)


def test_end_to_end_scripted_on_20_problems_then_sft(toy_problems, tmp_path, one_torch_thread):
    mcts, sampler, analyzer, _, _ = _parts()
    llm = ScriptedChatLLM(scripted)
    # math-verify itself is tested in test_verify_steps.py; the string verifier keeps this test fast
    pipe = CRPSPipeline(
        mcts,
        sampler,
        analyzer,
        PathSynthesizer(llm, StringVerifier()),
        template="crps",
        max_workers=2,
    )
    ds = pipe.run(toy_problems, tmp_path)
    st = {k: v.counts for k, v in pipe.stats.items()}
    n_ok = 20 - st["pair"].get("no_positive", 0) - st["pair"].get("no_negative", 0)
    assert pipe.stats["explore"].problems == 20 and st["explore"]["trajectories"] >= 20 * 5
    assert st["pair"]["pairs"] == st["critique"]["critiques"] == st["synthesize"]["synthesized"]
    assert st["pair"]["pairs"] <= 10 * n_ok and st["pair"]["hard"] >= st["pair"]["soft"]
    assert (
        st["synthesize"]["verified"] == st["synthesize"]["synthesized"]
    )  # the solver is always right
    assert len(ds) == pipe.report.n_unique == n_ok  # one distinct solution per problem after dedupe
    assert set(ds.column_names) >= {
        "prompt",
        "completion",
        "problem_id",
        "contrast_type",
        "problem",
        "solution",
    }
    assert ds[0]["prompt"].endswith("put your final answer within \\boxed{}.\n")
    rows = stages.read_stage(tmp_path / "synthesize.jsonl")
    assert len(rows) == 20  # skipped problems are rows too
    # JSONL round trip
    from crps_synth.trajectory import SynthesizedPath

    p = SynthesizedPath.from_dict(rows[0]["paths"][0]) if rows[0]["paths"] else None
    if p is not None:
        assert SynthesizedPath.from_dict(p.to_dict()).to_dict() == p.to_dict()

    from crps_synth.train import train_sft
    from papercore.testing import build_word_tokenizer, tiny_causal_lm

    tok = build_word_tokenizer(texts=list(ds["prompt"]) + list(ds["completion"]))
    model = tiny_causal_lm("llama", tokenizer=tok, seed=0)
    model.train()
    trainer = train_sft(
        ds,
        model,
        tok,
        tmp_path / "student",
        save=False,
        max_steps=5,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        disable_tqdm=True,
    )
    assert trainer.state.global_step == 5
    assert all(l["loss"] == l["loss"] for l in trainer.state.log_history if "loss" in l)  # noqa: E741


class _Killed(RuntimeError):
    pass


def test_killed_synthesize_resumes_to_the_same_jsonl(toy_problems, tmp_path):
    mcts, sampler, analyzer, synth, _ = _parts()
    stages.explore(toy_problems, mcts, tmp_path / "e.jsonl", seed=1)
    stages.pair(tmp_path / "e.jsonl", sampler, tmp_path / "p.jsonl")
    stages.critique(tmp_path / "p.jsonl", analyzer, tmp_path / "c.jsonl")
    stages.synthesize(tmp_path / "c.jsonl", synth, tmp_path / "full.jsonl", max_workers=2)

    calls = {"n": 0}

    def dies(system, user):
        calls["n"] += 1
        if calls["n"] > 37:
            raise _Killed("killed")
        return scripted(system, user)

    dying = PathSynthesizer(ScriptedChatLLM(dies), StringVerifier())
    with pytest.raises(_Killed):
        stages.synthesize(tmp_path / "c.jsonl", dying, tmp_path / "run.jsonl", max_workers=1)
    partial = stages.read_stage(tmp_path / "run.jsonl")
    assert 0 < len(partial) < 20
    with open(tmp_path / "run.jsonl", "a") as f:  # a kill in the middle of a write
        f.write('{"problem_id": "half-writ')
    st = stages.synthesize(
        tmp_path / "c.jsonl",
        PathSynthesizer(ScriptedChatLLM(scripted), StringVerifier()),
        tmp_path / "run.jsonl",
    )
    assert st.resumed == len(partial)
    assert (tmp_path / "run.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def test_skipped_problems_are_counted(tmp_path):
    class Always:
        def __init__(self, right):
            self.right = right

        def propose(self, problem, prefix, n, temperature, *, seed=None):  # one-step final answers
            return [f"way {i}: \\boxed{{{1 if self.right else 2}}}" for i in range(n)]

        def rollout(self, problem, prefix, temperature, *, seed=None):
            return ["answer \\boxed{1}" if self.right else "answer \\boxed{2}"]

    probs = [{"id": "a", "problem": "p", "gold": "1"}]
    for right, reason in ((False, "no_positive"), (True, "no_negative")):
        mcts = MCTS(Always(right), StringVerifier(), MCTSConfig(num_rollouts=4))
        e, p = tmp_path / f"e{right}.jsonl", tmp_path / f"p{right}.jsonl"
        stages.explore(probs, mcts, e)
        st = stages.pair(e, ContrastivePairSampler(seed=0), p)
        assert st.counts == {reason: 1}
        assert stages.read_stage(p)[0]["skipped"] == reason


def test_export_dedupes_and_oversamples_only_on_request(toy_problems, tmp_path):
    pipe = CRPSPipeline(*_parts())
    pipe.run(toy_problems[:6], tmp_path)
    st, rep = stages.export(tmp_path / "synthesize.jsonl", tmp_path / "x.jsonl")
    assert (
        rep.n_written == rep.n_unique < rep.n_input and st.counts["duplicates"] == rep.n_duplicates
    )
    _, rep2 = stages.export(
        tmp_path / "synthesize.jsonl", tmp_path / "y.jsonl", oversample_to=3 * rep.n_unique
    )
    assert rep2.n_written == 3 * rep.n_unique and rep2.n_unique == rep.n_unique
    with pytest.raises(ValueError, match="template"):
        stages.export(
            tmp_path / "synthesize.jsonl", tmp_path / "z.jsonl", template="no placeholder"
        )


def test_baselines_same_shape(toy_problems, tmp_path):
    rs = rejection_sampling_baseline(ToyExplorer(), StringVerifier(), toy_problems[:5], n_samples=6)
    assert len(rs) > 0 and set(rs["contrast_type"]) == {"rs"}
    stages.explore(toy_problems[:5], MCTS(ToyExplorer(), StringVerifier()), tmp_path / "e.jsonl")
    bp = best_path_baseline(stages.read_stage(tmp_path / "e.jsonl"))
    assert 0 < len(bp) <= 5 and bp.column_names == rs.column_names


def test_stage_input_errors(tmp_path):
    from crps_synth import StageFileError

    with pytest.raises(StageFileError, match="does not exist"):
        stages.pair(tmp_path / "missing.jsonl", ContrastivePairSampler(), tmp_path / "o.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(StageFileError, match="lacks"):
        stages.pair(tmp_path / "bad.jsonl", ContrastivePairSampler(), tmp_path / "o.jsonl")
