"""A deterministic synthetic English retrieval collection with natural hard negatives.

Design [inferred]: topics each have a small vocabulary of real words; every entity of a topic is a
made-up, pronounceable proper name with three entity-specific attribute words (one taken from the
topic's vocabulary, two from a shared pool, all distinct inside the topic). A document mixes the
entity's name and attributes with topic words and filler sentences; a query mentions two of the
entity's attributes with topic words, and either the name or a paraphrase ("which observatory ...").
Relevant documents of a query are the documents of its entity (relevance 1).

Every document of a topic shares the topic's vocabulary, so documents of *other entities of the
same topic* are natural hard negatives (they share topic words with the query), while documents of
other topics are simple negatives. To keep a zero-shot encoder from solving it by topic alone, a
document carries only two of its entity's three attributes, its filler nouns carry adjectives of
other entities of the topic, a quarter of the queries name the entity, and the names of a topic
share their first syllable (knobs below; see the package README for the measured baselines).
Entities are split into train and test, so test queries ask
about entities never seen in training; both splits search the full corpus.

Pure Python (``random.Random(seed)``): same arguments → identical data, on any machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from papercore.errors import MalformedInputError
from papercore.retrieval.data import RetrievalData


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# topic -> ("kind|kind", "topic vocabulary"): an entity is one of the kinds; ~15 real words per topic
_TOPIC_TABLE = {
    "astronomy": (
        "observatory|planetarium",
        "telescope orbit comet nebula galaxy asteroid eclipse "
        "planet meteor spectrum lens star crater satellite horizon",
    ),
    "cooking": (
        "restaurant|bakery",
        "oven recipe flour butter spice sauce knife "
        "garlic pastry broth roast dough pepper kitchen herbs",
    ),
    "sailing": (
        "schooner|yacht club",
        "hull mast anchor sail harbor tide rudder "
        "keel voyage compass deck current breeze rope lighthouse",
    ),
    "gardening": (
        "nursery|garden",
        "soil seed compost tulip hedge orchard greenhouse "
        "mulch blossom fern trellis bulb shovel rose lawn",
    ),
    "medicine": (
        "clinic|hospital",
        "patient vaccine surgery diagnosis fever symptom nurse "
        "therapy dose infection pulse ward bandage antibiotic pharmacy",
    ),
    "music": (
        "orchestra|choir",
        "violin melody rhythm chord tempo concert drum "
        "symphony piano harmony lyric rehearsal chorus guitar trumpet",
    ),
    "geology": (
        "quarry|canyon",
        "granite fossil basalt sediment volcano quartz erosion "
        "magma fault mineral cliff strata lava pebble crystal",
    ),
    "architecture": (
        "cathedral|palace",
        "arch column facade vault beam dome staircase "
        "brick balcony courtyard blueprint marble spire corridor window",
    ),
    "aviation": (
        "airline|airfield",
        "runway pilot cockpit propeller altitude wing hangar "
        "turbine landing radar glider jet cabin takeoff fuselage",
    ),
    "finance": (
        "bank|investment fund",
        "loan interest bond equity dividend mortgage ledger "
        "credit audit portfolio inflation deposit broker currency budget",
    ),
    "railways": (
        "railway|station",
        "locomotive platform carriage track signal timetable conductor "
        "freight tunnel junction steam ticket depot rail viaduct",
    ),
    "textiles": (
        "textile mill|weaving workshop",
        "loom wool cotton silk thread dye fabric "
        "needle spindle weave linen stitch pattern yarn tapestry",
    ),
    "photography": (
        "photo studio|gallery",
        "camera shutter aperture film exposure tripod portrait "
        "darkroom flash negative zoom print focus frame lighting",
    ),
    "winemaking": (
        "vineyard|winery",
        "grape barrel cellar vintage harvest cork fermentation "
        "oak bottle tasting vine press yeast cask label",
    ),
    "beekeeping": (
        "apiary|honey farm",
        "hive honey queen swarm pollen wax nectar "
        "comb drone smoker colony bloom sting meadow beekeeper",
    ),
    "mountaineering": (
        "expedition|mountain hut",
        "summit glacier ridge crampon avalanche ice axe "
        "camp peak trail harness ascent snow crevasse oxygen",
    ),
}
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    topic: (tuple(kinds.split("|")), _words(words))
    for topic, (kinds, words) in _TOPIC_TABLE.items()
}

# attribute words shared by all topics (each entity gets two, distinct inside its topic)
ATTRIBUTE_POOL: tuple[str, ...] = _words(
    """
    amber copper crimson silver ivory cobalt emerald scarlet violet golden indigo saffron
    northern southern eastern western coastal ancient medieval tiny massive hidden floating
    frozen quiet velvet wooden iron bronze glass hexagonal spiral striped rusty polished misty
    midnight autumn winter summer lunar desert island river forest marsh imperial nomadic rural
    twin solitary electric painted underground orange crooked secret fragrant stormy giant
    """
)

_ONSETS = _words("b d f g k l m n p r s t v z br dr kr st tr th sh gl")
_VOWELS = _words("a e i o u ai ei ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "th")

_INTROS = (
    "{name} is a {kind} where the {t1} and the {t2} matter most.",
    "At {name}, a {kind}, people talk about {t1}, {t2} and {t3}.",
    "{name} has been a {kind} for many years, known for {t1} and {t2}.",
    "The {kind} called {name} works with {t1} and {t2} every day.",
)
_ATTRIBUTE_SENTENCES = (
    "It is famous for its {p1} and its {p2}.",
    "Visitors remember the {p1} and the {p2}.",
    "{name} keeps a {p1} next to the {p2}.",
    "Everyone mentions the {p1}, and some recall the {p2}.",
)
_FILLERS = (
    "Like every {kind}, it depends on the {t1}, the {t2} and the {t3}.",
    "Most reports mention the {t1} before the {t2}.",
    "Local guides say the {t1} changes with the seasons.",
    "The {t1} was renovated several years ago, together with the {t2}.",
    "Nobody expected the {t1} to become so popular.",
    "A small museum nearby explains the history of the {t1} and the {t2}.",
    "Critics praised the {t1} but complained about the {t2}.",
    "On busy days the {t1} and the {t2} are crowded.",
)
_QUERIES_NAME = (
    "what is {name} known for, the {p1} or the {p2}?",
    "{name} {p1} and {p2}",
    "does {name} have a {p1} or a {p2}?",
)
_QUERIES_PARAPHRASE = (
    "which {kind} is known for a {p1} and a {p2}?",
    "the {kind} with the {p1} and the {p2}",
    "looking for a {kind} famous for its {p1} and {p2}",
    "{kind} {p1} {p2}",
)

# Difficulty knobs, tuned so that zero-shot all-MiniLM-L6-v2 is far from saturated (README):
# probability that a query uses the entity's name rather than a paraphrase,
_P_NAME = 0.25
# attributes per document (2 of the entity's 3, so queries and documents overlap partly),
_DOC_ATTRIBUTES = 2
# probability that a filler noun carries an adjective of another entity of the same topic.
_P_DISTRACTOR = 1.0
# whether the entity names of a topic share their first syllable.
_SHARED_NAME_PREFIX = True


@dataclass
class SyntheticRetrieval:
    """A generated collection: the corpus, a train and a test split (disjoint entities), and labels.

    ``train`` and ``test`` share ``corpus``; ``doc_entity`` / ``doc_topic`` map every document to
    its entity name / topic, ``query_entity`` maps every query (both splits) to its entity.
    """

    corpus: dict[str, str]
    train: RetrievalData
    test: RetrievalData
    doc_entity: dict[str, str]
    doc_topic: dict[str, str]
    query_entity: dict[str, str]
    entity_topic: dict[str, str] = field(default_factory=dict)
    entity_attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class _Entity:
    name: str
    topic: str
    kind: str
    attributes: tuple[str, str, str]


def _make_name(rng: random.Random, taken: set[str], prefix: str) -> str:
    """A pronounceable made-up name: ``prefix`` + 1-2 syllables + an optional coda."""
    while True:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 1, 2)))]
        name = (prefix + "".join(parts) + rng.choice(_CODAS)).capitalize()
        if name.lower() not in taken and 4 <= len(name) <= 11:
            taken.add(name.lower())
            return name


def _phrases(
    rng: random.Random, ent: _Entity, vocab: tuple[str, ...], which: list[int]
) -> tuple[str, str]:
    """Two noun phrases carrying the attributes ``which`` (indices into adj1, adj2, specialty)."""
    adj = [ent.attributes[i] for i in which if i < 2]
    nouns = rng.sample([w for w in vocab if w != ent.attributes[2]], 2)
    if 2 in which:  # the specialty noun takes the (single) adjective, the other noun goes bare
        return f"{adj[0]} {ent.attributes[2]}", nouns[0]
    return f"{adj[0]} {nouns[0]}", f"{adj[1]} {nouns[1]}"


def _document(
    rng: random.Random, ent: _Entity, vocab: tuple[str, ...], distractors: list[str]
) -> str:
    """Intro with the name, one sentence with ``_DOC_ATTRIBUTES`` attributes, two filler sentences.

    Filler nouns get an adjective of *another* entity of the topic with probability
    ``_P_DISTRACTOR``: attribute words alone do not identify an entity, their co-occurrence does.
    """
    t = rng.sample([w for w in vocab if w != ent.attributes[2]], 8)
    intro = rng.choice(_INTROS).format(name=ent.name, kind=ent.kind, t1=t[0], t2=t[1], t3=t[2])
    which = sorted(rng.sample(range(3), _DOC_ATTRIBUTES))
    if _DOC_ATTRIBUTES == 3:
        adj1, adj2, spec = ent.attributes
        if rng.random() < 0.5:
            adj1, adj2 = adj2, adj1
        p1, p2 = f"{adj1} {spec}", f"{adj2} {t[3]}"
    else:
        p1, p2 = _phrases(rng, ent, vocab, which)
        if rng.random() < 0.5:
            p1, p2 = p2, p1
    attr = rng.choice(_ATTRIBUTE_SENTENCES).format(name=ent.name, p1=p1, p2=p2)
    nouns = [
        f"{rng.choice(distractors)} {w}" if distractors and rng.random() < _P_DISTRACTOR else w
        for w in t[4:8]
    ]
    fillers = [
        f.format(kind=ent.kind, t1=nouns[i], t2=nouns[i + 1], t3=nouns[i + 2])
        for i, f in enumerate(rng.sample(_FILLERS, 2))
    ]
    middle = [attr, *fillers]
    rng.shuffle(middle)
    return " ".join([intro, *middle])


def _query(rng: random.Random, ent: _Entity, vocab: tuple[str, ...]) -> str:
    which = sorted(rng.sample(range(3), 2))
    p1, p2 = _phrases(rng, ent, vocab, which)
    if rng.random() < 0.5:
        p1, p2 = p2, p1
    if rng.random() < _P_NAME:
        template = rng.choice(_QUERIES_NAME)
    else:
        template = rng.choice(_QUERIES_PARAPHRASE)
    return template.format(name=ent.name, kind=ent.kind, p1=p1, p2=p2)


def make_synthetic_retrieval(
    *,
    n_topics: int = 12,
    entities_per_topic: int = 6,
    docs_per_entity: int = 4,
    queries_per_entity: int = 2,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> SyntheticRetrieval:
    """Generate the collection (see the module docstring); deterministic for a given ``seed``.

    Sizes: ``n_topics · entities_per_topic · docs_per_entity`` documents (288 by default) and
    ``… · queries_per_entity`` queries, split by entity: ``round(test_fraction · #entities)``
    entities (spread over topics) go to ``test``, the rest to ``train``.
    """
    if not 1 <= n_topics <= len(TOPICS):
        raise MalformedInputError(f"n_topics must be in [1, {len(TOPICS)}], got {n_topics}")
    max_entities = min(len(ATTRIBUTE_POOL) // 2, *(len(v) for _, v in TOPICS.values()))
    if not 1 <= entities_per_topic <= max_entities:
        raise MalformedInputError(
            f"entities_per_topic must be in [1, {max_entities}], got {entities_per_topic}"
        )
    for name, value in (
        ("docs_per_entity", docs_per_entity),
        ("queries_per_entity", queries_per_entity),
    ):
        if value < 1:
            raise MalformedInputError(f"{name} must be ≥ 1, got {value}")
    if not 0.0 < test_fraction < 1.0:
        raise MalformedInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_entities = n_topics * entities_per_topic
    n_test = min(max(1, round(test_fraction * n_entities)), n_entities - 1)
    if n_entities < 2:
        raise MalformedInputError("need at least 2 entities to split into train and test")

    rng = random.Random(seed)
    topics = rng.sample(sorted(TOPICS), n_topics)
    taken: set[str] = set()
    by_topic: list[list[_Entity]] = []
    for topic in topics:
        kinds, vocab = TOPICS[topic]
        pool = rng.sample(ATTRIBUTE_POOL, 2 * entities_per_topic)
        topic_attrs = rng.sample(vocab, entities_per_topic)
        # names of one topic share their first syllable (as product lines or places often do),
        # so a name alone is weaker evidence for a sub-word encoder
        prefix = rng.choice(_ONSETS) + rng.choice(_VOWELS) if _SHARED_NAME_PREFIX else ""
        ents = [
            _Entity(
                name=_make_name(rng, taken, prefix),
                topic=topic,
                kind=rng.choice(kinds),
                attributes=(pool[2 * i], pool[2 * i + 1], topic_attrs[i]),
            )
            for i in range(entities_per_topic)
        ]
        by_topic.append(ents)

    corpus: dict[str, str] = {}
    doc_entity: dict[str, str] = {}
    doc_topic: dict[str, str] = {}
    queries: dict[str, str] = {}
    query_entity: dict[str, str] = {}
    entity_docs: dict[str, list[str]] = {}
    for ents in by_topic:
        for ent in ents:
            vocab = TOPICS[ent.topic][1]
            distractors = [a for other in ents if other is not ent for a in other.attributes[:2]]
            docs = entity_docs.setdefault(ent.name, [])
            for _ in range(docs_per_entity):
                did = f"d{len(corpus):05d}"
                corpus[did] = _document(rng, ent, vocab, distractors)
                doc_entity[did] = ent.name
                doc_topic[did] = ent.topic
                docs.append(did)
            for _ in range(queries_per_entity):
                qid = f"q{len(queries):05d}"
                queries[qid] = _query(rng, ent, vocab)
                query_entity[qid] = ent.name

    # test entities: rank r of every topic (after a shuffle) before rank r + 1, so topics are spread
    order: list[str] = []
    shuffled = [rng.sample(ents, len(ents)) for ents in by_topic]
    for r in range(entities_per_topic):
        order.extend(ents[r].name for ents in shuffled)
    test_entities = set(order[:n_test])

    qrels = {q: {d: 1 for d in entity_docs[e]} for q, e in query_entity.items()}
    full = RetrievalData(corpus=corpus, queries=queries, qrels=qrels)
    test_q = [q for q, e in query_entity.items() if e in test_entities]
    train_q = [q for q, e in query_entity.items() if e not in test_entities]
    all_ents = [e for ents in by_topic for e in ents]
    return SyntheticRetrieval(
        corpus=corpus,
        train=full.subset(train_q),
        test=full.subset(test_q),
        doc_entity=doc_entity,
        doc_topic=doc_topic,
        query_entity=query_entity,
        entity_topic={e.name: e.topic for e in all_ents},
        entity_attributes={e.name: e.attributes for e in all_ents},
    )
