"""E-GRM: parallel direct judgements → consensus gate → (only if they disagree) CoT paths + scorer.

One :class:`EfficientGRM` call handles a batch of items of three kinds:

* **pair** ``{"prompt", "response_a", "response_b"}`` → verdict ``"A"`` / ``"B"`` (or ``"tie"`` for
  identical responses, which are never sampled), ``reward_a`` / ``reward_b`` = P(A) / P(B);
* **answer** ``{"prompt"}`` → the final answer (e.g. MATH) and its probability;
* **verdict** ``{"prompt", "response"}`` → P(response is correct) from ``yes`` / ``no`` judgements.

Stage 1 samples the M direct judgements of *all* items together (:func:`~egrm_reward.sampling.sample_schedule`);
pairwise samples marked in the schedule's swap mask see the responses swapped and their verdicts are
mapped back. Stage 2 routes each item (:class:`~egrm_reward.routing.CoTRouter`); LONG items get N CoT
paths (again batched), scored by the :class:`~egrm_reward.scorer.PathScorer`, and the best-scored
path's answer (or a score-weighted vote) is returned. Every result carries a :class:`CallCost`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from egrm_reward.consensus import (
    ConsensusResult,
    SamplingSchedule,
    consensus_from_answers,
    unswap_ab,
)
from egrm_reward.errors import (
    EGRMTypeError,
    EGRMValueError,
    EmptyAnswersError,
    ScorerMissingError,
)
from egrm_reward.extract import answers_equivalent, get_extractor
from egrm_reward.routing import CoTRouter, Route, RouteDecision
from egrm_reward.sampling import n_tokens, sample_schedule

logger = logging.getLogger(__name__)

PAIR_DIRECT = (
    "Question:\n{prompt}\n\nResponse A:\n{response_a}\n\nResponse B:\n{response_b}\n\n"
    "Which response is better? Reply with only the letter A or B.\nAnswer:"
)
PAIR_COT = (
    "Question:\n{prompt}\n\nResponse A:\n{response_a}\n\nResponse B:\n{response_b}\n\n"
    "Compare the two responses step by step, then give your verdict as [[A]] or [[B]].\n"
)
ANSWER_DIRECT = "{prompt}\nGive only the final answer in \\boxed{{}}.\nAnswer:"
ANSWER_COT = "{prompt}\nReason step by step, then put the final answer in \\boxed{{}}.\n"
VERDICT_DIRECT = "Question:\n{prompt}\n\nResponse:\n{response}\n\nIs the response correct? Reply yes or no.\nAnswer:"
VERDICT_COT = (
    "Question:\n{prompt}\n\nResponse:\n{response}\n\n"
    "Check the response step by step, then end with 'Answer: yes' or 'Answer: no'.\n"
)
AGGREGATIONS = ("argmax", "weighted_vote", "vote")


@dataclass
class EGRMConfig:
    """Everything an :class:`EfficientGRM` call depends on (the CLI builds it from flags).

    Attributes:
        schedule: the M direct decodings (M = ``schedule.m`` ≥ 2).
        tau: consensus threshold τ ∈ (0, 1].
        always_cot / never_cot: the always-CoT and direct-only baselines (always-CoT skips stage 1).
        cot_schedule: sampling of the N CoT paths (default: ``schedule``, so N = M).
        aggregation: ``"argmax"`` (best-scored path), ``"weighted_vote"`` (Σ softmax(s/T) per answer)
            or ``"vote"`` (majority over CoT answers, no scorer).
        on_missing_scorer: ``"vote"`` (fall back with a warning) or ``"raise"``.
        *_template: prompt templates (``str.format`` with ``prompt``, ``response_a``, ``response_b``,
            ``response``); ``*_extractor``: names or callables (see :mod:`egrm_reward.extract`).
        equivalence: ``"exact"`` or ``"math"`` (math-verify) for merging answers.
        swap_positions: swap A/B in the schedule's swap-mask samples (position-bias control).
        seed: base seed combined with each schedule entry's seed.
    """

    schedule: SamplingSchedule = field(default_factory=SamplingSchedule)
    tau: float = 0.8
    always_cot: bool = False
    never_cot: bool = False
    cot_schedule: SamplingSchedule | None = None
    direct_max_new_tokens: int = 32
    cot_max_new_tokens: int = 1024
    stop: tuple[str, ...] = ()
    aggregation: str = "argmax"
    agg_temperature: float = 1.0
    on_missing_scorer: str = "vote"
    pair_direct_template: str = PAIR_DIRECT
    pair_cot_template: str = PAIR_COT
    answer_direct_template: str = ANSWER_DIRECT
    answer_cot_template: str = ANSWER_COT
    verdict_direct_template: str = VERDICT_DIRECT
    verdict_cot_template: str = VERDICT_COT
    pair_extractor: str | Callable[[str], str | None] = "choice_ab"
    answer_extractor: str | Callable[[str], str | None] = "boxed_math"
    verdict_extractor: str | Callable[[str], str | None] = "yes_no"
    equivalence: str = "exact"
    swap_positions: bool = True
    scorer_batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        CoTRouter(self.tau, self.always_cot, self.never_cot)  # validates τ and the flags
        if self.aggregation not in AGGREGATIONS:
            raise EGRMValueError(
                f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}"
            )
        if self.on_missing_scorer not in ("vote", "raise"):
            raise EGRMValueError(
                f"on_missing_scorer must be 'vote' or 'raise', got {self.on_missing_scorer!r}"
            )
        if self.agg_temperature <= 0:
            raise EGRMValueError(f"agg_temperature must be > 0, got {self.agg_temperature}")
        if self.equivalence not in ("exact", "math"):
            raise EGRMValueError(f"equivalence must be 'exact' or 'math', got {self.equivalence!r}")
        for name in ("direct_max_new_tokens", "cot_max_new_tokens"):
            if getattr(self, name) < 1:
                raise EGRMValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.stop = tuple(self.stop)


@dataclass
class CallCost:
    """Cost of one judged item.

    ``decode_steps`` counts sequential decoding steps: the M (or N) samples of one stage run in
    parallel, so a stage costs its longest sample; ``wall_time_s`` is the item's share of the batch's
    wall time (exact for single calls).
    """

    route: str
    consensus: float
    n_direct_tokens: int = 0
    n_cot_tokens: int = 0
    n_scorer_tokens: int = 0
    decode_steps: int = 0
    wall_time_s: float = 0.0

    @property
    def generated_tokens(self) -> int:
        return self.n_direct_tokens + self.n_cot_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "generated_tokens": self.generated_tokens}


@dataclass
class JudgeResult:
    """The outcome of one item (see the module doc for the three kinds)."""

    kind: str
    answer: str | None
    distribution: dict[str, float]
    route: Route
    decision: RouteDecision | None
    consensus: ConsensusResult | None
    cost: CallCost
    cot_answers: list[str | None] = field(default_factory=list)
    cot_scores: list[float] = field(default_factory=list)
    cot_texts: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str | None:
        return self.answer

    @property
    def reward_a(self) -> float:
        return self.distribution.get("A", 0.0)

    @property
    def reward_b(self) -> float:
        return self.distribution.get("B", 0.0)

    @property
    def reward(self) -> float:
        """Pair: P(A); verdict: P(yes); answer: probability of the returned answer."""
        if self.kind == "pair":
            return self.reward_a
        if self.kind == "verdict":
            return self.distribution.get("yes", 0.0)
        return self.distribution.get(self.answer, 0.0) if self.answer is not None else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "answer": self.answer,
            "distribution": self.distribution,
            "route": self.route.value,
            "consensus": None if self.consensus is None else self.consensus.consensus,
            "direct_answers": None if self.consensus is None else self.consensus.answers,
            "cot_answers": self.cot_answers,
            "cot_scores": self.cot_scores,
            **{
                f"cost_{k}": v
                for k, v in self.cost.as_dict().items()
                if k not in ("route", "consensus")
            },
        }


def _item_kind(item: dict[str, Any], i: int) -> str:
    if not isinstance(item, dict):
        raise EGRMTypeError(
            f"item {i} must be a dict with 'prompt' (and responses), got {type(item).__name__}"
        )
    if not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
        raise EmptyAnswersError(
            f"item {i} needs a non-empty string 'prompt', got {item.get('prompt')!r}"
        )
    if "response_a" in item or "response_b" in item:
        for k in ("response_a", "response_b"):
            if not isinstance(item.get(k), str):
                raise EGRMTypeError(
                    f"pair item {i} needs string {k!r}, got {type(item.get(k)).__name__}"
                )
        return "pair"
    if "response" in item:
        if not isinstance(item["response"], str):
            raise EGRMTypeError(
                f"verdict item {i} needs a string 'response', got {type(item['response']).__name__}"
            )
        return "verdict"
    return "answer"


class EfficientGRM:
    """The E-GRM judge over a papercore generation backend.

    Args:
        backend: a papercore ``GenerationBackend`` (``papercore.make_backend("transformers", model=...)``,
            ``"vllm"`` or ``"openai"``), or a model directory (the transformers backend is built).
        scorer: the path scorer for LONG routes (``None``: majority vote over CoT answers, with a warning,
            unless ``aggregation="vote"``).
        config: :class:`EGRMConfig`.
        router: any object with ``decide(ConsensusResult) -> RouteDecision`` (default: ``CoTRouter``
            from the config; e.g. :class:`~egrm_reward.routing.RandomRouter` for the random-gate baseline).
    """

    def __init__(
        self, backend: Any, scorer: Any = None, config: EGRMConfig | None = None, router: Any = None
    ):
        if isinstance(backend, str):
            from papercore.generation import make_backend

            backend = make_backend("transformers", model=backend)
        if not hasattr(backend, "generate"):
            raise EGRMTypeError(
                f"backend must have a generate(prompts, config) method, got {type(backend).__name__}"
            )
        self.backend = backend
        self.scorer = scorer
        self.config = config or EGRMConfig()
        self.router = router or CoTRouter(
            self.config.tau, self.config.always_cot, self.config.never_cot
        )
        self._warned_vote = False

    # ------------------------------------------------------------------ public
    def judge_pair(self, prompt: str, response_a: str, response_b: str) -> JudgeResult:
        """Which of two responses is better (``answer`` ∈ {"A", "B", "tie"})."""
        return self([{"prompt": prompt, "response_a": response_a, "response_b": response_b}])[0]

    def answer(self, prompt: str) -> JudgeResult:
        """The final answer to ``prompt`` (pointwise / MATH mode)."""
        return self([{"prompt": prompt}])[0]

    def judge_response(self, prompt: str, response: str) -> JudgeResult:
        """P(``response`` answers ``prompt`` correctly) from yes/no judgements."""
        return self([{"prompt": prompt, "response": response}])[0]

    def __call__(self, batch: Sequence[dict[str, Any]]) -> list[JudgeResult]:
        """Judge a batch of items (dicts; see the module doc); stage 1 and CoT are batched over items."""
        if isinstance(batch, dict):
            raise EGRMTypeError(
                "EfficientGRM expects a list of items; wrap a single dict in a list"
            )
        items = list(batch)
        if not items:
            raise EmptyAnswersError("EfficientGRM got an empty batch (expected >= 1 item)")
        kinds = [_item_kind(it, i) for i, it in enumerate(items)]
        cfg = self.config
        t0 = time.perf_counter()
        results: list[JudgeResult | None] = [None] * len(items)
        active: list[int] = []
        for i, (it, k) in enumerate(zip(items, kinds, strict=True)):
            if k == "pair" and it["response_a"] == it["response_b"]:
                results[i] = JudgeResult(
                    "pair",
                    "tie",
                    {"A": 0.5, "B": 0.5},
                    Route.SHORT,
                    None,
                    None,
                    CallCost(Route.SHORT.value, 1.0),
                )
            else:
                active.append(i)
        if not active:
            return results  # type: ignore[return-value]

        # ---- stage 1: M direct judgements per item, all items in one schedule sweep
        consensus: dict[int, ConsensusResult] = {}
        direct_tok: dict[int, list[int]] = {}
        if cfg.always_cot:
            decisions = {
                i: RouteDecision(Route.LONG, float("nan"), cfg.tau, "always_cot") for i in active
            }
        else:
            sched = cfg.schedule
            mask = sched.swap_mask() if cfg.swap_positions else (False,) * sched.m
            prompts = [
                [self._prompt(items[i], kinds[i], cot=False, swapped=mask[e]) for i in active]
                for e in range(sched.m)
            ]
            comps = sample_schedule(
                self.backend,
                prompts,
                sched,
                max_new_tokens=cfg.direct_max_new_tokens,
                stop=cfg.stop,
                base_seed=cfg.seed,
            )
            for i, cs in zip(active, comps, strict=True):
                ex = self._extractor(kinds[i])
                answers = [
                    unswap_ab(ex(c.text), mask[e] and kinds[i] == "pair") for e, c in enumerate(cs)
                ]
                consensus[i] = consensus_from_answers(answers, equivalence=cfg.equivalence)
                direct_tok[i] = [n_tokens(c) for c in cs]
            decisions = {i: self.router.decide(consensus[i]) for i in active}
        t_stage1 = time.perf_counter() - t0

        # ---- stage 2: CoT paths for LONG items, batched
        long_items = [i for i in active if decisions[i].route is Route.LONG]
        cot: dict[int, tuple[list[str], list[str | None], list[str], list[int]]] = {}
        t1 = time.perf_counter()
        if long_items:
            csched = cfg.cot_schedule or cfg.schedule
            cmask = csched.swap_mask() if cfg.swap_positions else (False,) * csched.m
            cprompts = [
                [self._prompt(items[i], kinds[i], cot=True, swapped=cmask[e]) for i in long_items]
                for e in range(csched.m)
            ]
            comps = sample_schedule(
                self.backend,
                cprompts,
                csched,
                max_new_tokens=cfg.cot_max_new_tokens,
                stop=cfg.stop,
                base_seed=cfg.seed + 7_777,
            )
            for j, (i, cs) in enumerate(zip(long_items, comps, strict=True)):
                ex = self._extractor(kinds[i])
                ans = [
                    unswap_ab(ex(c.text), cmask[e] and kinds[i] == "pair") for e, c in enumerate(cs)
                ]
                cot[i] = (
                    [c.text for c in cs],
                    ans,
                    [cprompts[e][j] for e in range(csched.m)],
                    [n_tokens(c) for c in cs],
                )
        t_cot = time.perf_counter() - t1

        # ---- scoring and aggregation
        t2 = time.perf_counter()
        scored: dict[int, tuple[list[float], int]] = {}
        use_scorer = cfg.aggregation != "vote"
        if long_items and use_scorer and self.scorer is None:
            if cfg.on_missing_scorer == "raise":
                raise ScorerMissingError(
                    f"{len(long_items)} item(s) took the LONG route but no scorer was given "
                    "(pass scorer=..., or aggregation='vote', or on_missing_scorer='vote')"
                )
            if not self._warned_vote:
                logger.warning(
                    "no path scorer: LONG routes fall back to majority vote over CoT answers"
                )
                self._warned_vote = True
            use_scorer = False
        if use_scorer:
            for i in long_items:
                texts, _, cps, _ = cot[i]
                s, ntok = self.scorer.score_with_cost(cps, texts, batch_size=cfg.scorer_batch_size)
                scored[i] = ([float(x) for x in s], ntok)
        t_score = time.perf_counter() - t2

        share1 = t_stage1 / len(active)
        share2 = (t_cot + t_score) / len(long_items) if long_items else 0.0
        for i in active:
            d = decisions[i]
            cr = consensus.get(i)
            dt = direct_tok.get(i, [])
            cost = CallCost(
                route=d.route.value,
                consensus=d.consensus,
                n_direct_tokens=sum(dt),
                decode_steps=max(dt, default=0),
                wall_time_s=share1,
            )
            if d.route is Route.SHORT:
                assert cr is not None
                dist = _normalise(cr.distribution)
                results[i] = JudgeResult(kinds[i], cr.modal_answer, dist, Route.SHORT, d, cr, cost)
                continue
            texts, ans, _, ctok = cot[i]
            cost.n_cot_tokens = sum(ctok)
            cost.decode_steps += max(ctok, default=0)
            cost.wall_time_s += share2
            if i in scored:
                scores, ntok = scored[i]
                cost.n_scorer_tokens = ntok
                answer, dist = self._aggregate_scored(ans, scores)
            else:
                scores = []
                vote = consensus_from_answers(ans, equivalence=cfg.equivalence)
                answer, dist = vote.modal_answer, _normalise(vote.distribution)
            if answer is None and cr is not None and cr.modal_answer is not None:
                answer, dist = cr.modal_answer, _normalise(cr.distribution)
            results[i] = JudgeResult(
                kinds[i], answer, dist, Route.LONG, d, cr, cost, ans, scores, texts
            )
        return results  # type: ignore[return-value]

    def as_reward_fn(self, mode: str = "answer", name: str = "egrm_reward") -> EGRMRewardFunction:
        """A plain picklable callable for ``trl.GRPOTrainer(reward_funcs=[...])`` (see :class:`EGRMRewardFunction`)."""
        return EGRMRewardFunction(self, mode=mode, name=name)

    # ------------------------------------------------------------------ internals
    def _extractor(self, kind: str) -> Callable[[str], str | None]:
        cfg = self.config
        return get_extractor(
            {
                "pair": cfg.pair_extractor,
                "answer": cfg.answer_extractor,
                "verdict": cfg.verdict_extractor,
            }[kind]
        )

    def _prompt(self, item: dict[str, Any], kind: str, *, cot: bool, swapped: bool) -> str:
        cfg = self.config
        if kind == "pair":
            a, b = item["response_a"], item["response_b"]
            if swapped:
                a, b = b, a
            tpl = cfg.pair_cot_template if cot else cfg.pair_direct_template
            return tpl.format(prompt=item["prompt"], response_a=a, response_b=b)
        if kind == "verdict":
            tpl = cfg.verdict_cot_template if cot else cfg.verdict_direct_template
            return tpl.format(prompt=item["prompt"], response=item["response"])
        tpl = cfg.answer_cot_template if cot else cfg.answer_direct_template
        return tpl.format(prompt=item["prompt"])

    def _aggregate_scored(
        self, answers: list[str | None], scores: list[float]
    ) -> tuple[str | None, dict[str, float]]:
        """argmax: best-scored parseable path; weighted_vote: Σ softmax(s/T) per answer. Returns (answer, P)."""
        cfg = self.config
        t = cfg.agg_temperature
        mx = max(scores)
        w = [math.exp((s - mx) / t) for s in scores]
        z = sum(w)
        dist: dict[str, float] = {}
        for a, wi in zip(answers, w, strict=True):
            if a is None:
                continue
            key = next((k for k in dist if answers_equivalent(k, a, cfg.equivalence)), a)
            dist[key] = dist.get(key, 0.0) + wi / z
        if not dist:
            return None, {}
        dist = _normalise(dist)
        if cfg.aggregation == "weighted_vote":
            return max(dist, key=lambda k: dist[k]), dist
        best = max((j for j, a in enumerate(answers) if a is not None), key=lambda j: scores[j])
        a = answers[best]
        key = next(k for k in dist if answers_equivalent(k, a, cfg.equivalence))  # type: ignore[arg-type]
        return key, dist


def _normalise(dist: dict[str, float]) -> dict[str, float]:
    z = sum(dist.values())
    return {k: v / z for k, v in dist.items()} if z > 0 else {}


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string as is; a chat (message list) → its assistant contents joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict) and "content" in completion:
        return str(completion["content"])
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        parts = [
            str(m.get("content", ""))
            for m in completion
            if m.get("role", "assistant") == "assistant"
        ]
        return "\n".join(parts)
    raise EGRMTypeError(
        f"a completion must be a string or a list of chat messages, got {type(completion).__name__}"
    )


def prompt_text(prompt: Any) -> str:
    """A TRL prompt as text: a string as is; a chat → its last user message (system prompts dropped)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        users = [str(m.get("content", "")) for m in prompt if m.get("role") == "user"]
        if users:
            return users[-1]
        return "\n".join(str(m.get("content", "")) for m in prompt)
    raise EGRMTypeError(
        f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}"
    )


class EGRMRewardFunction:
    """E-GRM as a TRL reward function: ``f(prompts, completions, **kw) -> list[float]``, one per completion.

    A plain object (not an ``nn.Module``, which ``GRPOTrainer`` would treat as a classifier) that
    pickles with its judge.

    * ``mode="answer"``: the judge answers each *distinct* prompt once (GRPO repeats prompts
      ``num_generations`` times); a completion's reward is the judge's probability of the answer
      extracted from the completion (0 when none is found).
    * ``mode="verdict"``: each (prompt, completion) is judged yes/no; reward = P(yes).

    The costs of every call are appended to ``self.costs`` (one :class:`CallCost` per judged item).
    """

    def __init__(self, grm: EfficientGRM, mode: str = "answer", name: str = "egrm_reward"):
        if mode not in ("answer", "verdict"):
            raise EGRMValueError(f"reward mode must be 'answer' or 'verdict', got {mode!r}")
        self.grm = grm
        self.mode = mode
        self.__name__ = name
        self.costs: list[CallCost] = []

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float]:
        if len(prompts) != len(completions):
            raise EGRMValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
        if not completions:
            return []
        ptexts = [prompt_text(p) for p in prompts]
        ctexts = [completion_text(c) for c in completions]
        if self.mode == "verdict":
            res = self.grm(
                [{"prompt": p, "response": c} for p, c in zip(ptexts, ctexts, strict=True)]
            )
            self.costs.extend(r.cost for r in res)
            return [float(r.distribution.get("yes", 0.0)) for r in res]
        unique = list(dict.fromkeys(ptexts))
        res = self.grm([{"prompt": p} for p in unique])
        self.costs.extend(r.cost for r in res)
        by_prompt = dict(zip(unique, res, strict=True))
        ex = get_extractor(self.grm.config.answer_extractor)
        eq = self.grm.config.equivalence
        out = []
        for p, c in zip(ptexts, ctexts, strict=True):
            a = ex(c)
            dist = by_prompt[p].distribution
            out.append(
                0.0
                if a is None
                else float(sum(v for k, v in dist.items() if answers_equivalent(k, a, eq)))
            )
        return out
