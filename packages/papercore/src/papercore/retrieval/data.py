"""Retrieval data: qrels/run types, :class:`RetrievalData`, and loaders/writers for the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title"?, "text"}``), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (header ``query-id  corpus-id  score``). These
functions read and write that layout without the ``beir`` package.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from papercore.errors import MalformedInputError
from papercore.io import atomic_write, iter_jsonl, write_jsonl

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

Qrels = dict[str, dict[str, int]]
"""Relevance judgements: ``qid -> {docid: relevance}``, every relevance > 0."""

Run = dict[str, dict[str, float]]
"""A ranking: ``qid -> {docid: score}`` (higher is better)."""

_QRELS_HEADER = ("query-id", "corpus-id", "score")


def as_qrels(x: Mapping[str, Iterable[str] | Mapping[str, int]]) -> Qrels:
    """Normalise relevance judgements to :data:`Qrels`.

    Accepts ``dict[qid, set[docid]]`` or ``dict[qid, list[docid]]`` (every listed document gets
    relevance 1) or ``dict[qid, dict[docid, int]]`` (entries with relevance ≤ 0 are dropped).
    Queries left without a relevant document are dropped. Ids become ``str``.
    """
    if not isinstance(x, Mapping):
        raise MalformedInputError(
            f"qrels must be a dict qid -> set/list of docids or qid -> {{docid: relevance}}, "
            f"got {type(x).__name__}"
        )
    out: Qrels = {}
    for qid, rel in x.items():
        if isinstance(rel, Mapping):
            judged: dict[str, int] = {}
            for did, r in rel.items():
                try:
                    value = int(r)
                except (TypeError, ValueError):
                    raise MalformedInputError(
                        f"qrels[{qid!r}][{did!r}]: relevance must be an integer, got {r!r}"
                    ) from None
                if value > 0:
                    judged[str(did)] = value
        elif isinstance(rel, (set, frozenset, list, tuple)):
            judged = {str(did): 1 for did in rel}
        else:
            raise MalformedInputError(
                f"qrels[{qid!r}]: expected a set/list of docids or a dict docid -> relevance, "
                f"got {type(rel).__name__}"
            )
        if judged:
            out[str(qid)] = judged
    return out


@dataclass
class RetrievalData:
    """A retrieval test collection: documents, queries and their relevance judgements."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels

    def subset(self, qids: Iterable[str]) -> RetrievalData:
        """The same corpus with only the queries ``qids`` and their qrels (unknown qids raise)."""
        qids = list(qids)
        unknown = [q for q in qids if q not in self.queries]
        if unknown:
            raise MalformedInputError(
                f"subset: {len(unknown)} unknown query id(s): {unknown[:10]}"
                + (" ..." if len(unknown) > 10 else "")
            )
        return RetrievalData(
            corpus=self.corpus,
            queries={q: self.queries[q] for q in qids},
            qrels={q: dict(self.qrels[q]) for q in qids if q in self.qrels},
        )

    def __repr__(self) -> str:
        return (
            f"RetrievalData(corpus={len(self.corpus)} docs, queries={len(self.queries)}, "
            f"qrels={sum(len(v) for v in self.qrels.values())} judgements)"
        )


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _records(path: PathLike, what: str) -> Iterator[tuple[str, dict]]:
    """``(str(_id), record)`` of a BEIR JSONL file; a repeated ``_id`` raises naming the file."""
    path = _require_file(Path(path), f"{what} file")
    seen: set[str] = set()
    for n, row in enumerate(iter_jsonl(path, required=("_id", "text")), start=1):
        rid = str(row["_id"])
        if rid in seen:
            raise MalformedInputError(f"{path}: duplicate {what} id {rid!r} (record {n})")
        seen.add(rid)
        yield rid, row


def load_corpus(path: PathLike) -> dict[str, str]:
    """Read a BEIR ``corpus.jsonl``: ``{"_id", "title"?, "text"}`` per line -> ``{docid: text}``.

    When a non-empty title exists the text is ``title + " " + text``. Duplicate ids raise
    :class:`MalformedInputError` naming the file.
    """
    corpus: dict[str, str] = {}
    for did, row in _records(path, "document"):
        title = str(row.get("title") or "").strip()
        text = str(row["text"] or "")
        corpus[did] = f"{title} {text}" if title else text
    return corpus


def load_queries(path: PathLike) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``: ``{"_id", "text"}`` per line -> ``{qid: text}``."""
    return {qid: str(row["text"] or "") for qid, row in _records(path, "query")}


def load_qrels(path: PathLike) -> Qrels:
    """Read a qrels TSV: BEIR ``query-id  corpus-id  score`` (header optional) or TREC ``qid 0 docid rel``.

    Rows with score ≤ 0 are dropped. A malformed line raises :class:`MalformedInputError` naming
    the file and the 1-based line.
    """
    path = _require_file(Path(path), "qrels file")
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [f.strip() for f in fields]
            if lineno == 1 and tuple(f.lower() for f in fields[:3]) == _QRELS_HEADER:
                continue
            if len(fields) == 3:
                qid, did, score = fields
            elif len(fields) == 4:  # TREC qrels: qid iteration docid relevance
                qid, _, did, score = fields
            else:
                raise MalformedInputError(
                    f"{path}, line {lineno}: expected 3 tab-separated fields "
                    f"(query-id, corpus-id, score), got {len(fields)}: {line[:80]!r}"
                )
            try:
                number = float(score)
            except ValueError:
                raise MalformedInputError(
                    f"{path}, line {lineno}: score must be an integer, got {score!r}"
                ) from None
            if not math.isfinite(number):
                raise MalformedInputError(
                    f"{path}, line {lineno}: score must be a finite integer, got {score!r}"
                )
            value = int(number)
            if not qid or not did:
                raise MalformedInputError(f"{path}, line {lineno}: empty query-id or corpus-id")
            if value > 0:
                judged = qrels.setdefault(qid, {})
                judged[did] = max(value, judged.get(did, 0))
    return qrels


def load_beir(folder: PathLike, split: str = "test") -> RetrievalData:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Queries are restricted to those with at least one relevant document in the split's qrels.
    Qrels of queries absent from ``queries.jsonl`` are dropped with a warning; judged documents
    absent from the corpus are kept (they can never be retrieved) and counted in a warning. A split
    that keeps no query raises :class:`MalformedInputError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BEIR folder not found: {folder}")
    corpus = load_corpus(_require_file(folder / "corpus.jsonl", "BEIR corpus file"))
    all_queries = load_queries(_require_file(folder / "queries.jsonl", "BEIR queries file"))
    qrels = load_qrels(_require_file(folder / "qrels" / f"{split}.tsv", "BEIR qrels file"))
    orphans = [q for q in qrels if q not in all_queries]
    if orphans:
        logger.warning(
            "%s: %d qrels query id(s) not in queries.jsonl, dropped: %s",
            folder,
            len(orphans),
            orphans[:5],
        )
        for q in orphans:
            del qrels[q]
    if not qrels:
        raise MalformedInputError(
            f"{folder}: split {split!r} keeps no query: qrels/{split}.tsv judges "
            + (
                f"{len(orphans)} query id(s) (e.g. {orphans[:3]}), none of them in queries.jsonl "
                f"({len(all_queries)} queries, e.g. {list(all_queries)[:3]})"
                if orphans
                else "no query with a relevance > 0"
            )
        )
    missing_docs = sum(1 for rel in qrels.values() for d in rel if d not in corpus)
    if missing_docs:
        logger.warning("%s: %d judged document(s) not in the corpus", folder, missing_docs)
    queries = {q: t for q, t in all_queries.items() if q in qrels}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


def save_beir(data: RetrievalData, folder: PathLike, split: str = "test") -> Path:
    """Write ``data`` in the BEIR layout under ``folder`` (atomic writes); returns the folder.

    Titles are written empty (``RetrievalData`` keeps one text per document). ``queries.jsonl`` is
    shared by every split, so the queries already in it are kept and ``data.queries`` is merged in
    (saving ``train`` then ``test`` into one folder keeps both splits' queries); a query id whose
    text changes is overwritten with a warning. ``corpus.jsonl`` is rewritten.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        folder / "corpus.jsonl",
        ({"_id": did, "title": "", "text": text} for did, text in data.corpus.items()),
    )
    queries_file = folder / "queries.jsonl"
    queries = load_queries(queries_file) if queries_file.is_file() else {}
    changed = [q for q, t in data.queries.items() if q in queries and queries[q] != t]
    if changed:
        logger.warning(
            "%s: %d query id(s) already there with another text, overwritten: %s",
            queries_file,
            len(changed),
            changed[:5],
        )
    queries.update(data.queries)
    write_jsonl(queries_file, ({"_id": qid, "text": text} for qid, text in queries.items()))
    with atomic_write(folder / "qrels" / f"{split}.tsv") as fh:
        fh.write("\t".join(_QRELS_HEADER) + "\n")
        for qid, rel in as_qrels(data.qrels).items():
            for did, score in rel.items():
                fh.write(f"{qid}\t{did}\t{score}\n")
    return folder
