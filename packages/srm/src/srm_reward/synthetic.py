"""A synthetic knowledge-base world for the SRM miniature (spec §4): knowledge the scalar RM cannot see.

~500 products with attributes (brand, category, color, country), one short passage each. Queries ask for
one attribute and a format ("one sentence" or "a list"). Responses are correct, **fact-swapped** (the
attribute value of another product: a plausible surface form), **style-violating** (right fact, wrong
format) or **off-intent** (a different attribute's correct value). A hidden quality
``Q = w_f·fact + w_s·style + w_i·intent`` orders each pair. Entities are split so that test entities never
appear in RM training: facts about them can only come from the branches.

Programmatic branches (module-level classes, picklable) exercise the ``Callable[[prompt, response], str]``
interface: :class:`IntentBranch` (semantic), :class:`KBEntityBranch` (BM25 over the KB), :class:`OracleFactCheck`
(the KB lookup: the oracle ceiling) and :class:`StyleBranch`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ATTRIBUTES",
    "ERROR_TYPES",
    "IntentBranch",
    "KBEntityBranch",
    "KBWorld",
    "OracleFactCheck",
    "StyleBranch",
    "factcheck_judge",
    "make_world",
    "noisy_factcheck_teacher",
]

ATTRIBUTES = ("brand", "category", "color", "country")
ERROR_TYPES = ("fact", "style", "intent")
FORMATS = ("sentence", "list")
WEIGHTS = {"fact": 1.0, "style": 0.5, "intent": 0.7}  # Q = w_f·fact + w_s·style + w_i·intent

_VALUES = {
    "category": (
        "lamp",
        "kettle",
        "chair",
        "drill",
        "camera",
        "speaker",
        "blender",
        "router",
        "watch",
        "heater",
        "scanner",
        "monitor",
        "fan",
        "toaster",
        "printer",
        "mixer",
        "stove",
        "radio",
        "tablet",
        "vacuum",
    ),
    "color": (
        "red",
        "blue",
        "green",
        "black",
        "white",
        "silver",
        "orange",
        "purple",
        "yellow",
        "grey",
        "pink",
        "brown",
    ),
    "country": (
        "france",
        "japan",
        "brazil",
        "kenya",
        "canada",
        "norway",
        "india",
        "mexico",
        "egypt",
        "chile",
        "spain",
        "korea",
        "peru",
        "ghana",
        "italy",
        "poland",
    ),
}
_SYL = (
    "ka",
    "lo",
    "mi",
    "ra",
    "zu",
    "te",
    "vo",
    "ni",
    "pe",
    "sa",
    "du",
    "fi",
    "go",
    "be",
    "ry",
    "xo",
    "qua",
    "len",
    "tor",
    "vex",
    "dar",
    "mon",
    "sil",
    "kin",
)
_ASK = {
    "brand": "which brand makes {n} ?",
    "category": "what kind of product is {n} ?",
    "color": "what color is {n} ?",
    "country": "which country is {n} from ?",
}
_SAY = {
    "brand": "{n} is made by {v} .",
    "category": "{n} is a {v} .",
    "color": "{n} is colored {v} .",
    "country": "{n} comes from {v} .",
}
_FMT = {"sentence": "answer in one sentence .", "list": "answer as a list ."}


def _word(rng: random.Random, k: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(k))


@dataclass
class KBWorld:
    """The knowledge base, its passages and the entity split."""

    entities: dict[str, dict[str, str]]
    train_entities: list[str]
    test_entities: list[str]
    brands: list[str] = field(default_factory=list)

    def passage(self, name: str) -> str:
        a = self.entities[name]
        return f"{name} is a {a['color']} {a['category']} made by {a['brand']} in {a['country']} ."

    def passages(self) -> dict[str, str]:
        return {n: self.passage(n) for n in self.entities}

    def values(self, attr: str) -> list[str]:
        return sorted({a[attr] for a in self.entities.values()})

    def query(self, name: str, attr: str, fmt: str) -> str:
        return f"{_ASK[attr].format(n=name)} {_FMT[fmt]}"

    @staticmethod
    def answer(name: str, attr: str, value: str, fmt: str) -> str:
        if fmt == "sentence":
            return _SAY[attr].format(n=name, v=value)
        return f"- name : {name}\n- {attr} : {value}"

    def response(
        self, name: str, attr: str, fmt: str, error: str | None, rng: random.Random
    ) -> str:
        """A response to the query ``(name, attr, fmt)`` with at most one error (``None`` = correct)."""
        true = self.entities[name]
        if error is None:
            return self.answer(name, attr, true[attr], fmt)
        if error == "fact":
            wrong = rng.choice([v for v in self.values(attr) if v != true[attr]])
            return self.answer(name, attr, wrong, fmt)
        if error == "style":
            return self.answer(name, attr, true[attr], "list" if fmt == "sentence" else "sentence")
        if error == "intent":
            other = rng.choice([a for a in ATTRIBUTES if a != attr])
            return self.answer(name, other, true[other], fmt)
        raise ValueError(f"unknown error type {error!r}; expected one of {ERROR_TYPES}")

    def pairs(self, entities: Sequence[str], per_entity: int, seed: int) -> list[dict[str, Any]]:
        """Preference pairs: chosen = the correct response, rejected = one error type (cycled), with
        ``Q`` of both sides (hidden quality), the ``error`` type and the ``entity``."""
        rng = random.Random(seed)
        out = []
        k = 0
        for name in entities:
            for _ in range(per_entity):
                attr, fmt = rng.choice(ATTRIBUTES), rng.choice(FORMATS)
                err = ERROR_TYPES[k % len(ERROR_TYPES)]
                k += 1
                q = self.query(name, attr, fmt)
                out.append(
                    {
                        "prompt": q,
                        "chosen": self.response(name, attr, fmt, None, rng),
                        "rejected": self.response(name, attr, fmt, err, rng),
                        "error": err,
                        "entity": name,
                        "attr": attr,
                        "format": fmt,
                        "q_chosen": sum(WEIGHTS.values()),
                        "q_rejected": sum(WEIGHTS.values()) - WEIGHTS[err],
                    }
                )
        return out

    def vocabulary_texts(self) -> list[str]:
        """Texts covering every word the world, its branches and the renderer use (for a word tokenizer)."""
        texts = list(self.passages().values())
        texts += [t for t in _ASK.values()] + list(_SAY.values()) + list(_FMT.values())
        texts += [f"- {a} : {v}" for a in ATTRIBUTES for v in self.values(a)]
        texts += [
            "<prompt> </prompt> <response> </response> <aux dim=semantic> </aux> entity factcheck style",
            "quality UNAVAILABLE &amp; &lt; &gt; intent format verdict ok issue supported contradicted",
            "evidence claim name none requested got sentence list the query asks for as a answer",
            "says so bad good fits wrong value response",
        ]
        from srm_reward.dims import DEFAULT_DIMENSIONS

        texts += [d.template for d in DEFAULT_DIMENSIONS]
        return texts


def make_world(
    n_entities: int = 500, n_brands: int = 40, test_fraction: float = 0.3, seed: int = 0
) -> KBWorld:
    """A KB of ``n_entities`` products with unique made-up names; ``test_fraction`` of them held out."""
    rng = random.Random(seed)
    brands: set[str] = set()
    while len(brands) < n_brands:
        brands.add(_word(rng, 2) + "co")
    names: set[str] = set()
    while len(names) < n_entities:
        w = _word(rng, 3)
        if w not in brands:
            names.add(w)
    brand_list = sorted(brands)
    ents = {}
    for n in sorted(names):
        ents[n] = {
            "brand": rng.choice(brand_list),
            **{a: rng.choice(v) for a, v in _VALUES.items()},
        }
    order = sorted(ents)
    rng.shuffle(order)
    n_test = round(test_fraction * n_entities)
    return KBWorld(ents, sorted(order[n_test:]), sorted(order[:n_test]), brand_list)


# ---------------------------------------------------------------------- parsing helpers
_NAME_RE = re.compile(r"\b([a-z]+)\b")


def _entity_in(world: KBWorld, text: str) -> str | None:
    for w in _NAME_RE.findall(text):
        if w in world.entities:
            return w
    return None


def _intent(prompt: str) -> tuple[str | None, str | None]:
    attr = next((a for a, t in _ASK.items() if t.split("{n}")[0].strip() in prompt), None)
    fmt = "list" if "as a list" in prompt else ("sentence" if "one sentence" in prompt else None)
    return attr, fmt


def _claims(world: KBWorld, response: str) -> list[tuple[str, str]]:
    """(attribute, value) pairs claimed by a response (values are disjoint across attributes)."""
    out = []
    for w in re.findall(r"[a-z]+", response):
        for a in ATTRIBUTES:
            if w in world._value_sets[a]:  # type: ignore[attr-defined]
                out.append((a, w))
    return out


def _ensure_sets(world: KBWorld) -> None:
    if not hasattr(world, "_value_sets"):
        world._value_sets = {a: set(world.values(a)) for a in ATTRIBUTES}  # type: ignore[attr-defined]


def _format_of(response: str) -> str:
    return "list" if response.lstrip().startswith("-") else "sentence"


# ---------------------------------------------------------------------- programmatic branches
class IntentBranch:
    """Semantic branch: the parsed intent of the query (asked attribute and format)."""

    fingerprint = "intent-v1"

    def __call__(self, prompt: str, response: str) -> str:
        attr, fmt = _intent(prompt)
        return f"intent : {attr or 'none'} ; format : {fmt or 'none'}"


class StyleBranch:
    """Style branch: the response's format against the requested one."""

    fingerprint = "style-v1"

    def __call__(self, prompt: str, response: str) -> str:
        _, want = _intent(prompt)
        got = _format_of(response)
        ok = want is None or want == got
        return f"requested {want or 'none'} , got {got} ; verdict : {'ok' if ok else 'issue'}"


class KBEntityBranch:
    """Entity branch: the top BM25 passage of the KB for the query (``papercore.retrieval.BM25Index``)."""

    def __init__(self, world: KBWorld) -> None:
        self.world = world
        self.fingerprint = f"bm25-{len(world.entities)}"
        self._index: Any = None
        self._ids: list[str] = []

    def __getstate__(self) -> dict:
        return {"world": self.world, "fingerprint": self.fingerprint, "_index": None, "_ids": []}

    def retrieve(self, query: str) -> str:
        if self._index is None:
            from papercore.retrieval import BM25Index

            idx = BM25Index()
            idx.index(self.world.passages())
            self._index = idx
        hits = self._index.search({"q": query}, k=1)["q"]
        return self.world.passage(next(iter(hits))) if hits else "none"

    def __call__(self, prompt: str, response: str) -> str:
        return self.retrieve(prompt)


class OracleFactCheck:
    """Fact-check oracle: each claimed (attribute, value) against the KB (``supported`` / ``contradicted``)."""

    fingerprint = "oracle-factcheck-v1"

    def __init__(self, world: KBWorld) -> None:
        self.world = world
        _ensure_sets(world)

    def verdict(self, prompt: str, response: str) -> str:
        _ensure_sets(self.world)
        name = _entity_in(self.world, prompt)
        claims = _claims(self.world, response)
        if name is None or not claims:
            return "supported"
        true = self.world.entities[name]
        return "contradicted" if any(true[a] != v for a, v in claims) else "supported"

    def __call__(self, prompt: str, response: str) -> str:
        return self.verdict(prompt, response)


def factcheck_judge(world: KBWorld):
    """A programmatic judge for Best-of-N: 1.0 when a candidate's verdict matches the KB, else 0.0."""
    oracle = OracleFactCheck(world)

    def judge(prompt: str, response: str, candidate: str, dimension: Any = None) -> float:
        return 1.0 if candidate.strip() == oracle.verdict(prompt, response) else 0.0

    return judge


def noisy_factcheck_teacher(world: KBWorld, accuracy: float = 0.6):
    """A noisy teacher generator for Best-of-N: each of ``n`` candidates is the right verdict with probability
    ``accuracy``, else the wrong one (seeded per example)."""
    oracle = OracleFactCheck(world)

    def generate(prompt: str, response: str, n: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        right = oracle.verdict(prompt, response)
        wrong = "supported" if right == "contradicted" else "contradicted"
        return [right if rng.random() < accuracy else wrong for _ in range(n)]

    return generate
