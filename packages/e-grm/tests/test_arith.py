"""The arithmetic miniature: task formats, tokenizer round trip, simulated generator, demo, generator training."""

from __future__ import annotations

import random

import pytest

from egrm_reward.arith import (
    ArithProblem,
    ArithTask,
    arith_egrm_config,
    build_arith_tokenizer,
    cot_prompt,
    direct_prompt,
    make_problem,
    path_correct_steps,
    train_generator,
)
from egrm_reward.errors import EGRMValueError
from egrm_reward.extract import get_extractor


def test_problem_formats():
    p = ArithProblem(3, (("+", 4), ("*", 2), ("-", 5)))
    assert p.values == [3, 7, 4, 9] and p.answer == "9" and p.k == 3
    assert direct_prompt(p) == "Q:3+4*2-5|direct:" and p.direct_target() == "ans=9"
    assert p.cot_target() == "3+4=7;7*2=4;4-5=9;ans=9"
    assert path_correct_steps(p.cot_target()) and not path_correct_steps("3+4=8;8*2=6;ans=6")
    ex = get_extractor(arith_egrm_config().answer_extractor)
    assert ex(p.cot_target()) == "9" and ex(p.direct_target()) == "9"
    with pytest.raises(EGRMValueError):
        make_problem(random.Random(0), 0)


def test_tokenizer_round_trip():
    tok = build_arith_tokenizer()
    rng = random.Random(3)
    for k in (1, 3, 5):
        p = make_problem(rng, k)
        for text in (direct_prompt(p) + p.direct_target(), cot_prompt(p) + p.cot_target()):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids and tok.decode(ids) == text


def test_simulated_generator_and_demo():
    from egrm_reward.demo import run_demo
    from egrm_reward.pipeline import EfficientGRM
    from egrm_reward.simulate import SimulatedArithBackend

    res = run_demo()
    assert res.kind == "pipeline check" and "simulated" in res.method
    assert res.value < res.baseline_value  # the gate saves tokens
    assert res.details["egrm_trigger_rate"] < 1.0
    easy, hard = ArithProblem(2, (("+", 1),)), make_problem(random.Random(1), 5)
    r = EfficientGRM(SimulatedArithBackend(), config=arith_egrm_config(aggregation="vote"))(
        [{"prompt": easy.prompt}, {"prompt": hard.prompt}]
    )
    assert r[0].answer == "3" and r[0].consensus.consensus == 1.0


@pytest.mark.slow
def test_generator_training_runs(papercore_cache_dir, one_torch_thread):
    from papercore.models import load_model

    path = train_generator(papercore_cache_dir, steps=3, task=ArithTask(max_k=2))
    model = load_model(str(path))
    assert model.config.num_hidden_layers == 4 and model.config.hidden_size == 128
