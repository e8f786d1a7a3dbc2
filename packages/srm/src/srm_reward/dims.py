"""Side-branch dimensions: what each branch looks at and how its auxiliary text is prompted (spec §2.1).

A :class:`Dimension` is a small config: a name, a prompt template for the branch's generator, whether the
text depends on the response (``semantic`` / ``entity`` depend only on the prompt and are cached per prompt),
the aux-text budget in tokens and a priority (unused by the renderer, whose ``drop_order`` decides).

Templates use ``{prompt}``, ``{response}`` and ``{context}`` (text from the branch's ``context_fn``, e.g.
retrieved evidence; empty when there is none). The five defaults are the paper's dimensions; their prompt
wording is **[INFERRED]** (the paper does not publish it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from srm_reward.errors import DuplicateDimensionError, SRMConfigError, UnknownDimensionError

__all__ = [
    "DEFAULT_DIMENSIONS",
    "DEFAULT_DROP_ORDER",
    "Dimension",
    "check_unique",
    "get_dimension",
]


@dataclass(frozen=True)
class Dimension:
    """One fine-grained evaluation dimension (one side branch).

    Attributes:
        name: identifier used in tags (``<aux dim=NAME>``), caches and adapter names; ``[A-Za-z0-9_-]+``.
        template: the branch generator's prompt; ``{prompt}``, ``{response}``, ``{context}`` (at least one) are
            filled in.
        depends_on_response: False when the text depends on the prompt only (cacheable per prompt).
        max_aux_tokens: budget of the aux text inside the rendered RM input (renderer truncation).
        priority: informational rank (higher = more important); the renderer uses its own ``drop_order``.
    """

    name: str
    template: str = "prompt: {prompt}\nresponse: {response}\n{name}:"
    depends_on_response: bool = True
    max_aux_tokens: int = 128
    priority: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SRMConfigError(f"Dimension.name must be a non-empty string, got {self.name!r}")
        if not all(c.isalnum() or c in "_-" for c in self.name):
            raise SRMConfigError(
                f"Dimension.name must use letters, digits, '_' or '-' only (it goes into a tag), got {self.name!r}"
            )
        if not isinstance(self.template, str) or not any(
            k in self.template for k in ("{prompt}", "{response}", "{context}")
        ):
            raise SRMConfigError(
                f"Dimension {self.name!r}: template must be a string using {{prompt}}, {{response}} or "
                f"{{context}}, got {self.template!r}"
            )
        if not isinstance(self.max_aux_tokens, int) or self.max_aux_tokens < 1:
            raise SRMConfigError(
                f"Dimension {self.name!r}: max_aux_tokens must be an int >= 1, got {self.max_aux_tokens!r}"
            )

    def format(self, prompt: str, response: str, context: str = "") -> str:
        """The branch generator's input for one (prompt, response) pair."""
        return (
            self.template.replace("{prompt}", prompt)
            .replace("{response}", response)
            .replace("{context}", context)
            .replace("{name}", self.name)
        )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        "semantic",
        "Query: {prompt}\nState what the query really asks for (intent, constraints).\nIntent:",
        depends_on_response=False,
        priority=4,
    ),
    Dimension(
        "entity",
        "Query: {prompt}\n{context}\nGive background facts about the entities in the query.\nEntities:",
        depends_on_response=False,
        priority=2,
    ),
    Dimension(
        "factcheck",
        "Query: {prompt}\nResponse: {response}\nEvidence: {context}\n"
        "Check each factual claim of the response; end with verdict: ok or issue.\nFact-check:",
        priority=5,
    ),
    Dimension(
        "style",
        "Query: {prompt}\nResponse: {response}\nDoes the style and format fit the request? "
        "End with verdict: ok or issue.\nStyle:",
        priority=1,
    ),
    Dimension(
        "quality",
        "Query: {prompt}\nResponse: {response}\nCritique the overall quality; end with verdict: ok or issue.\n"
        "Quality:",
        priority=0,
    ),
)
"""The paper's five dimensions (prompt wording [INFERRED])."""

DEFAULT_DROP_ORDER: tuple[str, ...] = ("quality", "style", "entity", "semantic", "factcheck")
"""Renderer truncation order: aux texts dropped first to last (spec §2.2; factcheck/semantic matter most)."""


def check_unique(names: Iterable[str], what: str = "dimension") -> list[str]:
    """Raise :class:`DuplicateDimensionError` when a name repeats; return the names as a list."""
    names = list(names)
    seen: set[str] = set()
    dups = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dups:
        raise DuplicateDimensionError(
            f"duplicate {what} name(s) {dups}; expected unique names, got {names}"
        )
    return names


def get_dimension(
    name: str | Dimension, known: Sequence[Dimension] = DEFAULT_DIMENSIONS
) -> Dimension:
    """A dimension by name among ``known`` (a :class:`Dimension` passes through)."""
    if isinstance(name, Dimension):
        return name
    for d in known:
        if d.name == name:
            return d
    raise UnknownDimensionError(
        f"unknown dimension {name!r}; expected one of {[d.name for d in known]}"
    )
