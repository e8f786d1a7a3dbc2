"""EfficientGRM end to end on a real tiny model (papercore's transformers backend) and scripted backends:
cost accounting, determinism, scorer aggregation, reward function, best-of-N."""

from __future__ import annotations

import pickle

import pytest
import torch

from egrm_reward import (
    BestOfNSelector,
    EfficientGRM,
    EGRMConfig,
    EGRMTypeError,
    EmptyAnswersError,
    PathScorer,
    PathScorerConfig,
    RandomRouter,
    Route,
    SamplingSchedule,
    ScorerMissingError,
)
from papercore.generation import make_backend


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return make_backend("transformers", model=str(tiny_model_dir))


def small_cfg(**kw):
    return EGRMConfig(direct_max_new_tokens=4, cot_max_new_tokens=8, **kw)


def test_real_model_costs_and_determinism(backend):
    items = [{"prompt": "1 + 2 ="}, {"prompt": "q", "response_a": "x", "response_b": "y"}]
    grm = EfficientGRM(backend, config=small_cfg(aggregation="vote"))
    res = grm(items)
    again = EfficientGRM(backend, config=small_cfg(aggregation="vote"))(items)
    for r, r2 in zip(res, again, strict=True):
        assert r.route == r2.route and r.answer == r2.answer
        assert r.consensus.answers == r2.consensus.answers and r.cot_texts == r2.cot_texts
        c = r.cost
        assert 0 < c.n_direct_tokens <= 5 * 4
        assert c.decode_steps <= 4 + (8 if r.route is Route.LONG else 0)
        if r.route is Route.LONG:
            assert 0 < c.n_cot_tokens <= 5 * 8 and len(r.cot_texts) == 5
        else:
            assert c.n_cot_tokens == 0
        assert c.wall_time_s > 0
    always = EfficientGRM(backend, config=small_cfg(always_cot=True, aggregation="vote"))(items)
    assert all(r.route is Route.LONG and r.cost.n_direct_tokens == 0 for r in always)
    never = EfficientGRM(backend, config=small_cfg(never_cot=True))(items)
    assert all(r.route is Route.SHORT and r.cost.n_cot_tokens == 0 for r in never)


def test_long_route_uses_the_scorer(scripted):
    """CoT paths answer 1..5; a scorer preferring the path that says 4 decides, not the vote."""

    def reply(prompt, config, k):
        if "step by step" in prompt:
            return f"reasoning {config.seed % 1_000_003} so \\boxed{{{int(config.seed % 1_000_003) + 1}}}"
        return f"\\boxed{{{int(config.seed % 1_000_003)}}}"  # 5 different direct answers: LONG

    class PreferFour(torch.nn.Module):
        def score_with_cost(self, prompts, paths, batch_size=8):
            import numpy as np

            return np.array([5.0 if "{4}" in p else 0.0 for p in paths]), 7 * len(paths)

    grm = EfficientGRM(scripted(reply), scorer=PreferFour(), config=EGRMConfig())
    r = grm.answer("x")
    assert r.route is Route.LONG and r.consensus.consensus == pytest.approx(0.2)
    assert r.answer == "4" and r.cot_answers == ["1", "2", "3", "4", "5"]
    assert r.cost.n_scorer_tokens == 35 and r.distribution["4"] > 0.9
    with pytest.raises(ScorerMissingError):
        EfficientGRM(scripted(reply), config=EGRMConfig(on_missing_scorer="raise")).answer("x")
    voted = EfficientGRM(scripted(reply), config=EGRMConfig()).answer("x")  # fallback: vote
    assert voted.route is Route.LONG and voted.answer == "1"


def test_random_router_and_bad_items(scripted):
    be = scripted(lambda p, c, k: "\\boxed{1}")
    grm = EfficientGRM(be, config=EGRMConfig(aggregation="vote"), router=RandomRouter(1.0, seed=0))
    assert grm.answer("x").route is Route.LONG
    with pytest.raises(EmptyAnswersError):
        grm([])
    with pytest.raises(EmptyAnswersError):
        grm([{"prompt": "  "}])
    with pytest.raises(EGRMTypeError):
        grm({"prompt": "x"})


def four_sevens_one_eight(prompt, config, k):
    return "\\boxed{7}" if k < 4 else "\\boxed{8}"


def test_reward_fn_is_a_picklable_plain_callable(scripted):
    grm = EfficientGRM(
        scripted(four_sevens_one_eight),
        config=EGRMConfig(schedule=SamplingSchedule.uniform_schedule(5)),
    )
    fn = grm.as_reward_fn()
    assert not isinstance(fn, torch.nn.Module) and fn.__name__ == "egrm_reward"
    prompts = ["p", "p", [{"role": "user", "content": "p"}]]
    completions = ["so 7", [{"role": "assistant", "content": "it is \\boxed{8}"}], "no idea"]
    assert fn(prompts, completions) == pytest.approx([0.8, 0.2, 0.0])
    assert len(fn.costs) == 1  # one judge call for the distinct prompt
    clone = pickle.loads(pickle.dumps(fn))
    assert clone(["p"], ["7"]) == pytest.approx([0.8])
    with pytest.raises(EGRMTypeError):
        fn(["p"], [42])


def test_best_of_n(tiny_model_dir, scripted):
    sc = PathScorer(PathScorerConfig(mode="mlp", backbone=str(tiny_model_dir), hidden_dim=8))
    res = BestOfNSelector(scorer=sc).select("q", ["a", "b b", "c c c"])
    assert res.index == max(range(3), key=lambda i: res.scores[i])
    grm = EfficientGRM(scripted(lambda p, c, k: "\\boxed{2}"), config=EGRMConfig())
    pick = BestOfNSelector(grm=grm).select("1+1", ["it is 3", "it is 2"])
    assert pick.index == 1 and pick.scores == [0.0, 1.0]
    with pytest.raises(EmptyAnswersError):
        BestOfNSelector(grm=grm).select("1+1", [])
