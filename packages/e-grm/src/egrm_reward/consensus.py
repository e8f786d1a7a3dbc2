"""Stage 1: M parallel direct decodings and their consensus (E-GRM §2.1).

``consensus(x) = c / M`` with ``c`` the count of the modal answer among the M extracted answers.
Unparseable answers (``None``) are singletons: they lower the consensus and never merge with each
other. In pairwise judging some samples see the two responses in swapped order; their ``"A"`` /
``"B"`` verdicts are mapped back to the original order *before* counting, so a judge that always
answers ``"A"`` (pure position bias) gets consensus 3/5 = 0.6 with 3 of 5 samples swapped, not 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from egrm_reward.errors import ConsensusConfigError, EmptyAnswersError
from egrm_reward.extract import answers_equivalent


@dataclass(frozen=True)
class SamplingSchedule:
    """One sampling configuration per parallel decoding: ``temperatures[i]``, ``top_ps[i]``, ``seeds[i]``.

    The default is the spec's [INFERRED] schedule for M = 5. ``swaps[i]`` says whether decoding
    ``i`` of a pairwise judgement sees the responses in swapped order (default: every second one).
    """

    temperatures: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.0)
    top_ps: tuple[float, ...] = (0.8, 0.9, 0.95, 0.95, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    swaps: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        m = len(self.temperatures)
        for name in ("top_ps", "seeds"):
            if len(getattr(self, name)) != m:
                raise ConsensusConfigError(
                    f"schedule {name} has {len(getattr(self, name))} entries, expected {m} (one per temperature)"
                )
        if m < 2:
            raise ConsensusConfigError(
                f"a sampling schedule needs M >= 2 entries (consensus is undefined for one sample), got {m}"
            )
        if self.swaps is not None and len(self.swaps) != m:
            raise ConsensusConfigError(
                f"schedule swaps has {len(self.swaps)} entries, expected {m}"
            )
        for t in self.temperatures:
            if t < 0:
                raise ConsensusConfigError(f"temperatures must be >= 0, got {t}")
        for p in self.top_ps:
            if not 0 < p <= 1:
                raise ConsensusConfigError(f"top_ps must be in (0, 1], got {p}")

    @property
    def m(self) -> int:
        return len(self.temperatures)

    @property
    def uniform(self) -> bool:
        """All entries sample alike (only seeds differ): one call with ``n = M`` can replace M calls."""
        return len(set(zip(self.temperatures, self.top_ps, strict=True))) == 1

    def swap_mask(self) -> tuple[bool, ...]:
        """Which decodings swap A and B (``swaps`` or every second one: 0-based odd indices)."""
        return self.swaps if self.swaps is not None else tuple(i % 2 == 1 for i in range(self.m))

    @classmethod
    def uniform_schedule(
        cls, m: int = 5, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0
    ) -> SamplingSchedule:
        """M identical entries (seeds ``seed .. seed+M-1``)."""
        if m < 2:
            raise ConsensusConfigError(f"M must be >= 2, got {m}")
        return cls((temperature,) * m, (top_p,) * m, tuple(range(seed, seed + m)))


@dataclass
class ConsensusResult:
    """The M answers of one input and their agreement.

    Attributes:
        answers: the M extracted answers (``None`` = unparseable), in original A/B orientation.
        modal_answer: the most frequent parseable answer (ties: the one seen first), or ``None``
            when no answer was parseable.
        consensus: ``count(modal_answer) / M`` ∈ [1/M, 1] (1/M when nothing parsed).
        count: ``count(modal_answer)`` (1 when nothing parsed: every ``None`` is a singleton).
        entropy: answer-distribution entropy ``-Σ p log p / log M`` ∈ [0, 1] (``None`` singletons).
        distribution: parseable answer → its share of the M samples.
    """

    answers: list[str | None]
    modal_answer: str | None
    consensus: float
    count: int
    entropy: float
    distribution: dict[str, float] = field(default_factory=dict)

    @property
    def m(self) -> int:
        return len(self.answers)

    @property
    def n_unparseable(self) -> int:
        return sum(a is None for a in self.answers)


def consensus_from_answers(
    answers: Sequence[str | None],
    *,
    equivalence: str | Callable[[str, str], bool] = "exact",
) -> ConsensusResult:
    """Consensus of M extracted answers (pure function; see the module doc).

    Args:
        answers: M ≥ 2 answers; ``None`` marks an unparseable sample.
        equivalence: ``"exact"``, ``"math"`` (math-verify) or a callable ``(a, b) -> bool``. An answer
            joins the first earlier cluster whose representative it is equivalent to.

    Raises:
        EmptyAnswersError: no answers. ConsensusConfigError: fewer than 2 answers.
    """
    answers = list(answers)
    if not answers:
        raise EmptyAnswersError("consensus needs M >= 2 answers, got an empty answer set")
    if len(answers) < 2:
        raise ConsensusConfigError(f"consensus needs M >= 2 answers, got {len(answers)}")
    same = (
        equivalence
        if callable(equivalence)
        else (lambda a, b: answers_equivalent(a, b, equivalence))  # type: ignore[arg-type]
    )
    reps: list[str] = []
    counts: list[int] = []
    for a in answers:
        if a is None:
            continue
        for i, r in enumerate(reps):
            if same(r, a):
                counts[i] += 1
                break
        else:
            reps.append(a)
            counts.append(1)
    m = len(answers)
    singletons = sum(a is None for a in answers)
    if reps:
        best = max(range(len(reps)), key=lambda i: (counts[i], -i))
        modal, count = reps[best], counts[best]
    else:
        modal, count = None, 1
    ps = [c / m for c in counts] + [1 / m] * singletons
    entropy = -sum(p * math.log(p) for p in ps) / math.log(m)
    return ConsensusResult(
        answers=answers,
        modal_answer=modal,
        consensus=count / m,
        count=count,
        entropy=max(0.0, entropy),
        distribution={r: c / m for r, c in zip(reps, counts, strict=True)},
    )


def unswap_ab(answer: str | None, swapped: bool) -> str | None:
    """Map a verdict given on swapped responses back to the original order (``A ↔ B``)."""
    if answer is None or not swapped:
        return answer
    return {"A": "B", "B": "A"}.get(answer, answer)


class ConsensusEstimator:
    """Sample M direct judgements with a :class:`SamplingSchedule` and measure their consensus.

    Args:
        schedule: one sampling configuration per decoding (M = ``schedule.m`` ≥ 2).
        extractor: generation text → answer (or ``None``).
        equivalence: how answers merge (see :func:`consensus_from_answers`).
    """

    def __init__(
        self,
        schedule: SamplingSchedule | None = None,
        extractor: Callable[[str], str | None] | None = None,
        equivalence: str | Callable[[str, str], bool] = "exact",
    ):
        from egrm_reward.extract import choice_ab

        self.schedule = schedule or SamplingSchedule()
        self.extractor = extractor or choice_ab
        self.equivalence = equivalence

    @property
    def m(self) -> int:
        return self.schedule.m

    def from_texts(
        self, texts: Sequence[str], swapped: Sequence[bool] | None = None
    ) -> ConsensusResult:
        """Consensus of M generated texts; ``swapped[i]`` maps sample i's A/B verdict back first."""
        if len(texts) != self.m:
            raise ConsensusConfigError(f"expected {self.m} generations (M), got {len(texts)}")
        swapped = list(swapped) if swapped is not None else [False] * self.m
        answers = [unswap_ab(self.extractor(t), s) for t, s in zip(texts, swapped, strict=True)]
        return consensus_from_answers(answers, equivalence=self.equivalence)

    def __call__(
        self,
        generate_fn: Callable[[str, int], str],
        prompt: str,
        swapped_prompt: str | None = None,
    ) -> ConsensusResult:
        """Consensus for one prompt with ``generate_fn(prompt, i) -> text`` (``i`` = schedule entry).

        When ``swapped_prompt`` is given, entries marked in ``schedule.swap_mask()`` use it and their
        A/B verdicts are mapped back. Batched sampling through a backend lives in
        :class:`~egrm_reward.pipeline.EfficientGRM`.
        """
        mask = self.schedule.swap_mask() if swapped_prompt is not None else (False,) * self.m
        texts = [
            generate_fn(swapped_prompt if s else prompt, i)  # type: ignore[arg-type]
            for i, s in enumerate(mask)
        ]
        return self.from_texts(texts, mask)

    @staticmethod
    def from_answers(
        answers: Sequence[str | None], equivalence: str | Callable[[str, str], bool] = "exact"
    ) -> ConsensusResult:
        """:func:`consensus_from_answers` (pure; used by tests)."""
        return consensus_from_answers(answers, equivalence=equivalence)
