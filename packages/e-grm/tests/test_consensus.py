"""Consensus, router boundaries (τ = 0.6, 0.8, 1.0), unparseable answers, position swap, extractors."""

from __future__ import annotations

import threading

import pytest

from egrm_reward import (
    ConsensusConfigError,
    ConsensusEstimator,
    CoTRouter,
    EfficientGRM,
    EGRMConfig,
    EmptyAnswersError,
    Route,
    SamplingSchedule,
    ThresholdError,
    consensus_from_answers,
)
from egrm_reward.extract import answers_equivalent, boxed_math, choice_ab, final_answer, numeric

A5 = ["A", "A", "A", "A", "A"]
A4 = ["A", "A", "A", "A", "B"]
A3 = ["A", "A", "A", "B", "B"]


@pytest.mark.parametrize(
    "answers,tau,route",
    [
        (A4, 0.8, Route.SHORT),  # 4/5 = 0.8 meets τ = 0.8 exactly
        (A3, 0.8, Route.LONG),
        (A3, 0.6, Route.SHORT),  # 3/5 = 0.6 meets τ = 0.6 exactly
        (["A", "A", "B", "B", "C"], 0.6, Route.LONG),
        (A5, 1.0, Route.SHORT),
        (A4, 1.0, Route.LONG),
        (A3, 0.2, Route.SHORT),  # τ ≤ 1/M: never CoT for parseable answers
    ],
)
def test_router_boundaries(answers, tau, route):
    cr = consensus_from_answers(answers)
    assert CoTRouter(tau).decide(cr).route is route


def test_consensus_values_and_entropy():
    cr = ConsensusEstimator.from_answers(A4)
    assert (cr.modal_answer, cr.consensus, cr.count) == ("A", 0.8, 4)
    assert cr.distribution == {"A": 0.8, "B": 0.2}
    assert consensus_from_answers(A5).entropy == 0.0
    assert consensus_from_answers(["A", "B", "C", "D", "E"]).entropy == pytest.approx(1.0)


def test_unparseable_answers_never_merge():
    cr = consensus_from_answers([None] * 5)
    assert cr.modal_answer is None and cr.consensus == pytest.approx(0.2) and cr.count == 1
    assert CoTRouter(0.2).decide(cr).route is Route.LONG  # nothing to return on the short path
    cr = consensus_from_answers(["A", None, None, "A", None])
    assert cr.modal_answer == "A" and cr.consensus == pytest.approx(0.4)
    assert cr.n_unparseable == 3


def test_bad_settings_raise_named_errors():
    for tau in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(ThresholdError):
            CoTRouter(tau)
    with pytest.raises(ThresholdError, match="always_cot"):
        CoTRouter(1.5)
    with pytest.raises(ThresholdError, match="both"):
        CoTRouter(0.8, always_cot=True, never_cot=True)
    with pytest.raises(EmptyAnswersError):
        consensus_from_answers([])
    with pytest.raises(ConsensusConfigError, match="M >= 2"):
        consensus_from_answers(["A"])
    with pytest.raises(ConsensusConfigError, match="M >= 2"):
        SamplingSchedule((1.0,), (1.0,), (0,))
    with pytest.raises(ConsensusConfigError, match="top_ps"):
        SamplingSchedule((1.0, 1.0), (1.0,), (0, 1))
    with pytest.raises(ThresholdError):
        EGRMConfig(tau=0)


def always_a(prompt, config, k):
    return "A"


@pytest.mark.parametrize(
    "swaps,want",
    [((False, True, False, True, True), 0.6), (None, 0.6), ((False,) * 5, 1.0)],
)
def test_position_swap_maps_verdicts_back(scripted, swaps, want):
    """A judge that always answers "A" is pure position bias: with 3 (or 2) of 5 swapped its
    consensus is 0.6, not 1.0; without swaps it looks fully confident."""
    sched = SamplingSchedule(swaps=swaps)
    grm = EfficientGRM(scripted(always_a), config=EGRMConfig(schedule=sched, aggregation="vote"))
    res = grm.judge_pair("q", "first response", "second response")
    assert res.consensus.consensus == pytest.approx(want)
    assert res.route is (Route.SHORT if want == 1.0 else Route.LONG)
    n_swapped = sum(sched.swap_mask())
    assert sorted(res.consensus.answers) == sorted(["B"] * n_swapped + ["A"] * (5 - n_swapped))


def content_judge(prompt, config, k):
    """Prefers the response containing 'good', wherever it is shown."""
    a = prompt.split("Response A:")[1].split("Response B:")[0]
    return "[[A]]" if "good" in a else "[[B]]"


def test_consistent_judge_is_position_invariant(scripted):
    grm = EfficientGRM(scripted(content_judge), config=EGRMConfig(aggregation="vote"))
    r1 = grm.judge_pair("q", "good one", "bad one")
    r2 = grm.judge_pair("q", "bad one", "good one")
    assert (r1.answer, r1.consensus.consensus, r1.route) == ("A", 1.0, Route.SHORT)
    assert (r2.answer, r2.consensus.consensus) == ("B", 1.0)
    assert r1.reward_a == 1.0 and r2.reward_b == 1.0
    tie = grm.judge_pair("q", "same", "same")
    assert tie.answer == "tie" and tie.cost.generated_tokens == 0


def test_sampling_calls_follow_the_schedule(scripted):
    be = scripted(lambda p, c, k: "\\boxed{3}")
    grm = EfficientGRM(be, config=EGRMConfig())
    grm([{"prompt": "1+2?"}, {"prompt": "2+1?"}])
    # non-uniform schedule: M calls of n = 1, each over both prompts, seeded per entry
    assert [(n, c.n, c.temperature) for n, c in be.calls] == [
        (2, 1, t) for t in (0.3, 0.5, 0.7, 0.9, 1.0)
    ]
    assert len({c.seed for _, c in be.calls}) == 5
    be2 = scripted(lambda p, c, k: "\\boxed{3}")
    EfficientGRM(be2, config=EGRMConfig(schedule=SamplingSchedule.uniform_schedule(5)))(
        [{"prompt": "1+2?"}, {"prompt": "2+1?"}]
    )
    assert [(n, c.n) for n, c in be2.calls] == [(2, 5)]  # uniform: one call with n = M


def test_extractors():
    assert choice_ab("I think [[B]] is better") == "B"
    assert choice_ab("Answer: A") == "A"
    assert choice_ab("A") == "A"
    assert choice_ab("The better response is B.") == "B"
    assert choice_ab("no verdict here") is None
    assert boxed_math("so \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert boxed_math("x = \\boxed{07}") == "7"
    assert numeric("total 1,000 and then 2.50") == "2.5"
    assert final_answer("3 + 4 = 7 , 7 * 2 = 4 answer 4") == "4"
    assert final_answer("nothing") is None


def test_math_equivalence_in_main_thread_and_worker_thread():
    assert answers_equivalent("1/2", "0.5", "math")
    assert not answers_equivalent("1/2", "0.6", "math")
    assert not answers_equivalent("1/2", "0.5", "exact")
    out = {}

    def work():
        out["r"] = answers_equivalent("\\frac{1}{2}", "0.5", "math")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out["r"] is True
    cr = consensus_from_answers(["1/2", "0.5", "\\frac{1}{2}", "3", None], equivalence="math")
    assert cr.count == 3 and cr.modal_answer == "1/2"


class _FakeParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _FakeOut:
    def __init__(self, text):
        self.text, self.token_ids, self.logprobs, self.finish_reason = text, [1, 2], None, "stop"


class _FakeLLM:
    """Stands in for ``vllm.LLM`` (vLLM cannot run on CPU): records the requests of each call."""

    def __init__(self):
        self.calls = []

    def get_tokenizer(self):
        from papercore.testing import build_word_tokenizer

        return build_word_tokenizer(["q"], chat_template=None)

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.calls.append((prompts, sampling_params))
        return [type("R", (), {"outputs": [_FakeOut("[[A]]")]})() for _ in prompts]


def test_vllm_gets_one_sampling_params_per_request(monkeypatch):
    import papercore.generation.vllm as pv
    from papercore.generation import make_backend

    monkeypatch.setattr(pv, "import_vllm", lambda: type("V", (), {"SamplingParams": _FakeParams}))
    llm = _FakeLLM()
    grm = EfficientGRM(make_backend("vllm", model=llm), config=EGRMConfig(aggregation="vote"))
    res = grm(
        [
            {"prompt": "q", "response_a": "x", "response_b": "y"},
            {"prompt": "q", "response_a": "y", "response_b": "z"},
        ]
    )
    # one vLLM call per stage (direct schedule, then the CoT paths of the LONG items)
    assert len(llm.calls) == 2
    prompts, params = llm.calls[0]
    assert len(prompts) == len(params) == 2 * 5
    assert [p.temperature for p in params[:5]] == [0.3, 0.5, 0.7, 0.9, 1.0]
    assert len({p.seed for p in params[:5]}) == 5 and all(p.n == 1 for p in params)
    assert all(r.consensus.consensus == pytest.approx(0.6) for r in res)  # "always A" under swaps


class _ConfigsBackend:
    """A backend named "vllm" that records ``generate`` calls (it has no ``llm`` to reach into)."""

    name = "vllm"

    def __init__(self):
        self.calls = []

    def generate(self, prompts, config=None, *, adapters=None, configs=None):
        from papercore.generation import Completion

        self.calls.append((list(prompts), config, configs))
        return [
            [Completion(text=f"{p}@{c.temperature}", token_ids=[1])]
            for p, c in zip(prompts, configs, strict=True)
        ]


def test_vllm_schedule_goes_through_backend_generate_configs():
    from egrm_reward.sampling import sample_schedule

    backend = _ConfigsBackend()
    sched = SamplingSchedule()
    prompts = [[f"p{p}e{i}" for p in range(2)] for i in range(sched.m)]
    out = sample_schedule(backend, prompts, sched, max_new_tokens=4, base_seed=1)
    assert len(backend.calls) == 1
    sent, config, configs = backend.calls[0]
    assert config is None and len(sent) == len(configs) == 2 * sched.m
    assert [c.temperature for c in configs[: sched.m]] == list(sched.temperatures)
    assert [c.seed for c in configs[: sched.m]] == [1_000_003 + s for s in sched.seeds]
    assert [[c.text for c in row] for row in out] == [
        [f"p{p}e{i}@{t}" for i, t in enumerate(sched.temperatures)] for p in range(2)
    ]
