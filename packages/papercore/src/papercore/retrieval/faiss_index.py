"""A thin dense retriever: any encoder + a faiss index over L2-normalised vectors.

Scores are inner products of L2-normalised float32 vectors, i.e. cosine similarities. Document ids
are kept in a parallel list (position in the faiss index = position in the list).

Index kinds: ``"flat"`` (exact), ``"ivf"``, ``"hnsw"``, or any ``faiss.index_factory`` string
(``"IVF4096,PQ64"``, ``"IVF1024,SQ8"``, ``"OPQ32,IVF4096,PQ32"``, ``"HNSW32"``, ...), always with the
inner-product metric.

Asymmetric models: documents are encoded with the encoder's ``encode_document`` and queries with
``encode_query`` (sentence-transformers ≥ 5; these apply the model's ``"document"`` / ``"query"``
prompts), falling back to ``encode`` for encoders without them. Explicit prompts and separate
query / document maximum lengths are constructor arguments.

Large corpora: :meth:`FaissRetriever.index` encodes and adds ``chunk_size`` documents at a time, so
memory holds the index plus one chunk of embeddings; an index that needs training (IVF, PQ, SQ) is
trained first on a seeded random sample of ``train_size`` documents. :meth:`FaissRetriever.load`
can memory-map the index file (``mmap=True``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.io import creation_mode, write_json
from papercore.retrieval.data import Run

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
IndexType = Literal["flat", "ivf", "hnsw"] | str  # or a faiss.index_factory string
Role = Literal["query", "document"]
NAMED_INDEXES = ("flat", "ivf", "hnsw")

MIN_POINTS_PER_CENTROID = 39  # faiss k-means warns below this many training points per centroid
DEFAULT_NPROBE = 16
DEFAULT_CHUNK_SIZE = 65_536
MIN_TRAIN_SIZE = 65_536  # enough for PQ/SQ codebooks (256 centroids per sub-quantiser × 256)
TRAIN_POINTS_PER_LIST = 64
_FORMAT_VERSION = 1
_INDEX_FILE = "index.faiss"
_IDS_FILE = "ids.json"
_CONFIG_FILE = "config.json"
_FILES = (_INDEX_FILE, _IDS_FILE, _CONFIG_FILE)
_REQUIRED_CONFIG = ("format_version", "index", "dim", "nlist", "nprobe", "hnsw_m", "ef_search")


class Encoder(Protocol):
    """Anything with a sentence-transformers-like ``encode`` (a ``SentenceTransformer`` qualifies)."""

    def encode(
        self,
        sentences: list[str],
        *,
        batch_size: int,
        convert_to_numpy: bool,
        show_progress_bar: bool,
    ) -> np.ndarray: ...


def import_faiss() -> Any:
    """Import ``faiss`` or raise :class:`BackendUnavailableError` with the install command."""
    try:
        import faiss
    except ImportError as e:
        raise BackendUnavailableError(
            'FaissRetriever needs faiss, which is not installed: pip install "papercore[retrieval]"'
        ) from e
    return faiss


def default_nlist(n: int) -> int:
    """IVF list count for ``n`` vectors: ``max(1, min(round(4·√n), n // 39))``.

    4·√n is the usual rule (and the paper's); faiss's k-means wants at least 39 training vectors
    per list (:data:`MIN_POINTS_PER_CENTROID`), which 4·√n only gives from n ≈ 24 300 on. Below
    that the default is ``n // 39``, so the default never triggers the few-points warning (except
    below 39 vectors, where one list is the floor and IVF is pointless: use ``"flat"``).
    """
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def check_texts(texts: Mapping[str, str], what: str) -> None:
    """Raise :class:`MalformedInputError` listing the ids of empty (or blank) texts."""
    if not isinstance(texts, Mapping):
        raise MalformedInputError(f"{what} must be a dict id -> text, got {type(texts).__name__}")
    empty = [i for i, t in texts.items() if not isinstance(t, str) or not t.strip()]
    if empty:
        raise MalformedInputError(
            f"{what}: {len(empty)} empty text(s), ids {empty[:10]}"
            + (" ..." if len(empty) > 10 else "")
        )


def default_train_size(n: int, nlist: int | None) -> int:
    """Training sample size for ``n`` vectors: ``min(n, max(64·nlist, 65 536))``.

    faiss's k-means wants 39–256 points per list and PQ / SQ codebooks a few ten thousand vectors;
    training on more only costs time (faiss itself subsamples k-means input to 256 per list).
    """
    return min(n, max(TRAIN_POINTS_PER_LIST * (nlist or 0), MIN_TRAIN_SIZE))


def _check_int(name: str, value: Any, low: int = 1, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise MalformedInputError(
            f"{name} must be an integer ≥ {low}"
            + (" or None" if optional else "")
            + f", got {value!r}"
        )


def _check_prompt(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise MalformedInputError(f"{name} must be a string or None, got {type(value).__name__}")


class FaissRetriever:
    """Dense retrieval with an encoder and a faiss index.

    Args:
        encoder: a ``SentenceTransformer`` or any object with
            ``encode(list[str], batch_size=, convert_to_numpy=True, show_progress_bar=) -> [n, d]``
            (``encode_query`` / ``encode_document`` are used when present);
            ``None`` when only :meth:`add` / :meth:`search_embeddings` are used.
        index: ``"flat"`` (``IndexFlatIP``, exact), ``"ivf"`` (``IndexIVFFlat`` over an
            ``IndexFlatIP`` quantiser), ``"hnsw"`` (``IndexHNSWFlat``), or any
            ``faiss.index_factory`` string such as ``"IVF4096,PQ64"``, ``"IVF1024,SQ8"`` or
            ``"HNSW32"``; always the inner-product metric.
        nlist: IVF lists of ``"ivf"``; default :func:`default_nlist` of the N vectors of each build
            (``min(4·√N, N/39)``). An explicit ``nlist > N`` raises. (A factory string names its own.)
        nprobe: IVF lists searched per query (``"ivf"`` and IVF factory strings); default ``None``
            = 16. Clamped to the index's nlist: with a warning when given explicitly, silently for
            the default.
        hnsw_m, ef_search, ef_construction: HNSW graph degree M (``"hnsw"``), search beam efSearch
            and construction beam efConstruction (faiss's default 40); the last two also apply to
            HNSW factory strings.
        batch_size, show_progress: passed to the encoder.
        query_prompt_name, query_prompt: passed to ``encode_query`` as ``prompt_name`` /
            ``prompt`` (``None``: the model's own ``"query"`` prompt, if it has one).
        document_prompt_name, document_prompt: the same for ``encode_document``.
        query_max_length, document_max_length: token limits for queries / documents (the encoder's
            ``max_seq_length`` is set for the call and restored); ``None`` keeps the encoder's.
        chunk_size: documents encoded and added per step of :meth:`index` (bounds the memory of
            the embeddings held at once).
        train_size: vectors an index that needs training is trained on (a seeded random sample);
            default :func:`default_train_size`.
        seed: seed of that sample.

    The settings stay as given: :attr:`requested_nlist` / :attr:`requested_nprobe` are what was
    asked for (``None`` = default), :attr:`nlist` / :attr:`nprobe` what the current IVF index
    uses (the requested values before anything is built). A rebuild (:meth:`reset` +
    :meth:`add`, or :meth:`index`) starts again from the requested values: a default nlist is
    recomputed for the new N and a clamped nprobe is not kept.
    """

    def __init__(
        self,
        encoder: Encoder | Any | None = None,
        index: IndexType = "flat",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 40,
        batch_size: int = 64,
        show_progress: bool = False,
        query_prompt_name: str | None = None,
        query_prompt: str | None = None,
        document_prompt_name: str | None = None,
        document_prompt: str | None = None,
        query_max_length: int | None = None,
        document_max_length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        train_size: int | None = None,
        seed: int = 0,
    ):
        if not isinstance(index, str) or not index.strip():
            raise MalformedInputError(
                "index must be 'flat', 'ivf', 'hnsw' or a faiss index_factory string "
                f"(e.g. 'IVF1024,PQ32'), got {index!r}"
            )
        if index not in NAMED_INDEXES and not any(
            _parse_factory(index, d) is not None for d in _PROBE_DIMS
        ):
            raise MalformedInputError(
                f"index {index!r} is not 'flat', 'ivf' or 'hnsw', nor a faiss index_factory "
                "string faiss can parse (e.g. 'IVF1024,Flat', 'IVF1024,PQ32', 'IVF1024,SQ8', "
                "'HNSW32')"
            )
        if encoder is not None and not callable(getattr(encoder, "encode", None)):
            raise MalformedInputError(
                f"encoder must have an .encode(texts, ...) method, got {type(encoder).__name__}"
            )
        for name, value in (
            ("nprobe", DEFAULT_NPROBE if nprobe is None else nprobe),
            ("hnsw_m", hnsw_m),
            ("ef_search", ef_search),
            ("ef_construction", ef_construction),
            ("batch_size", batch_size),
            ("chunk_size", chunk_size),
        ):
            if int(value) < 1:
                raise MalformedInputError(f"{name} must be ≥ 1, got {value}")
        if nlist is not None and int(nlist) < 1:
            raise MalformedInputError(f"nlist must be ≥ 1, got {nlist}")
        _check_int("train_size", train_size, optional=True)
        _check_int("query_max_length", query_max_length, optional=True)
        _check_int("document_max_length", document_max_length, optional=True)
        _check_int("seed", seed, low=0)
        for name, value in (
            ("query_prompt_name", query_prompt_name),
            ("query_prompt", query_prompt),
            ("document_prompt_name", document_prompt_name),
            ("document_prompt", document_prompt),
        ):
            _check_prompt(name, value)
        self.encoder = encoder
        self.index_type: str = index
        self.requested_nlist: int | None = None if nlist is None else int(nlist)
        self.requested_nprobe: int | None = None if nprobe is None else int(nprobe)
        self._warned_clamps: set[tuple[int, int]] = set()
        if index == "ivf" and self.requested_nlist is not None:
            self._effective_nprobe(self.requested_nlist, stacklevel=3)  # warn early
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.ef_construction = int(ef_construction)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.query_prompt_name = query_prompt_name
        self.query_prompt = query_prompt
        self.document_prompt_name = document_prompt_name
        self.document_prompt = document_prompt
        self.query_max_length = query_max_length
        self.document_max_length = document_max_length
        self.chunk_size = int(chunk_size)
        self.train_size = None if train_size is None else int(train_size)
        self.seed = int(seed)
        self.faiss_index: Any = None
        self._quantizer: Any = None
        self.ids: list[str] = []
        self._id_set: set[str] = set()
        self._id_cache: np.ndarray | None = None
        self._dim: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def is_factory(self) -> bool:
        """Whether the index is given as a ``faiss.index_factory`` string."""
        return self.index_type not in NAMED_INDEXES

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        return 0 if self.faiss_index is None else int(self.faiss_index.ntotal)

    @property
    def dim(self) -> int:
        """Embedding dimension (0 before anything was indexed)."""
        return self._dim or 0

    @property
    def nlist(self) -> int | None:
        """IVF lists of the built index; before a build, the requested value (``None`` = default)."""
        ivf = _ivf_of(self.faiss_index)
        if ivf is not None:
            return int(ivf.nlist)
        return self.requested_nlist if self.index_type == "ivf" else None

    @property
    def nprobe(self) -> int:
        """IVF lists searched per query: the requested nprobe (default 16), at most the index's nlist."""
        nprobe = DEFAULT_NPROBE if self.requested_nprobe is None else self.requested_nprobe
        nlist = self.nlist
        return nprobe if nlist is None else min(nprobe, nlist)

    @nlist.setter
    def nlist(self, value: int | None) -> None:
        if value is not None and int(value) < 1:
            raise MalformedInputError(f"nlist must be ≥ 1, got {value}")
        self.requested_nlist = None if value is None else int(value)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.set_search_params(nprobe=value)

    @property
    def _id_array(self) -> np.ndarray:
        """The ids as an object array (built lazily: rebuilding it per added chunk is quadratic)."""
        if self._id_cache is None or len(self._id_cache) != len(self.ids):
            self._id_cache = np.asarray(self.ids, dtype=object)
        return self._id_cache

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"FaissRetriever(index={self.index_type!r}, ntotal={self.ntotal}, dim={self.dim})"

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts with the encoder's plain ``encode`` -> float32 ``[n, d]`` (not normalised).

        Kept for symmetric use; :meth:`index` / :meth:`search` go through
        :meth:`encode_documents` / :meth:`encode_queries`.
        """
        return self._encode(texts, None)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries through ``encode_query`` (query prompt, query max length), else ``encode``."""
        return self._encode(texts, "query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Documents through ``encode_document`` (document prompt and max length), else ``encode``."""
        return self._encode(texts, "document")

    def _encode(self, texts: Sequence[str], role: Role | None) -> np.ndarray:
        if self.encoder is None:
            raise RuntimeError(
                "this FaissRetriever has no encoder: pass encoder= (or use add()/search_embeddings())"
            )
        texts = list(texts)
        kwargs: dict[str, Any] = dict(
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress,
        )
        fn = self.encoder.encode
        max_length = None
        if role is not None:
            prompt_name, prompt, max_length = (
                (self.query_prompt_name, self.query_prompt, self.query_max_length)
                if role == "query"
                else (self.document_prompt_name, self.document_prompt, self.document_max_length)
            )
            role_fn = getattr(self.encoder, f"encode_{role}", None)
            if callable(role_fn):
                fn = role_fn
            if prompt_name is not None:
                kwargs["prompt_name"] = prompt_name
            if prompt is not None:
                kwargs["prompt"] = prompt
        with _max_length(self.encoder, max_length, role):
            emb = fn(texts, **kwargs)
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise MalformedInputError(
                f"encoder returned shape {emb.shape}, expected [{len(texts)}, d]"
            )
        return emb

    # ------------------------------------------------------------------ building
    def index(self, corpus: Mapping[str, str]) -> None:
        """Encode ``corpus`` (``{docid: text}``) and index it, replacing any previous index.

        Documents are encoded (``encode_document``) and added ``chunk_size`` at a time. An index
        that needs training is first trained on a seeded random sample of ``train_size``
        documents (whose embeddings are reused when their chunk comes). Memory: the index, the
        ids, one chunk of embeddings and the training sample.
        """
        check_texts(corpus, "corpus")
        if not corpus:
            raise MalformedInputError("corpus is empty")
        ids = list(corpus)
        n = len(ids)
        self.reset()
        faiss = import_faiss()
        sample: dict[int, np.ndarray] = {}
        if self._needs_training(n):
            if self.index_type == "ivf":
                nlist = self._ivf_nlist(n)
                d = None
            else:  # a factory string: build it now, so a bad string fails before any encoding
                d = encoder_dimension(self.encoder)
                probe = self._new_index(faiss, d, n)
                ivf = _ivf_of(probe)
                nlist = None if ivf is None else int(ivf.nlist)
            m = self._train_size(n, nlist)
            rows = np.sort(np.random.default_rng(self.seed).choice(n, size=m, replace=False))
            logger.info("training the %s index on %d of %d documents", self.index_type, m, n)
            emb = self.encode_documents([corpus[ids[int(i)]] for i in rows])
            self.train(emb, n_total=n, _sampled=True)
            sample = {int(r): e for r, e in zip(rows, emb, strict=True)}
            del emb
        for start in range(0, n, self.chunk_size):
            chunk = ids[start : start + self.chunk_size]
            todo = [i for i in range(start, start + len(chunk)) if i not in sample]
            emb = None
            if todo:
                emb = self.encode_documents([corpus[ids[i]] for i in todo])
            if len(todo) == len(chunk):
                x = emb
            else:
                x = np.empty((len(chunk), self._dim or emb.shape[1]), dtype=np.float32)
                it = iter(emb) if emb is not None else iter(())
                for j, i in enumerate(range(start, start + len(chunk))):
                    x[j] = sample.pop(i) if i in sample else next(it)
            self.add(chunk, x)
            logger.debug("indexed %d / %d documents", min(start + len(chunk), n), n)

    def reset(self) -> None:
        """Drop the index and ids (the configuration stays)."""
        self.faiss_index = None
        self._quantizer = None
        self.ids = []
        self._id_set = set()
        self._id_cache = None
        self._dim = None

    def _needs_training(self, n: int) -> bool:
        if self.index_type in ("flat", "hnsw"):
            return False
        if self.index_type == "ivf":
            return True
        faiss = import_faiss()
        return not self._new_index(faiss, 8, n, probe=True).is_trained

    def _ivf_nlist(self, n: int) -> int:
        nlist = self.requested_nlist if self.requested_nlist is not None else default_nlist(n)
        if n < nlist:
            raise MalformedInputError(
                f"IVF needs at least nlist={nlist} vectors to train, got N={n}: "
                f"use nlist ≤ N/{MIN_POINTS_PER_CENTROID} (≈{max(1, n // MIN_POINTS_PER_CENTROID)}) "
                f"or index='flat'"
            )
        return nlist

    def _train_size(self, n: int, nlist: int | None) -> int:
        m = self.train_size if self.train_size is not None else default_train_size(n, nlist)
        m = min(m, n)
        if nlist is not None and m < nlist:
            raise MalformedInputError(
                f"train_size={m} is smaller than nlist={nlist}: IVF needs at least one training "
                "vector per list"
            )
        return m

    def _prepare(self, embeddings: np.ndarray, what: str) -> np.ndarray:
        x = np.array(embeddings, dtype=np.float32, copy=True, order="C")
        if x.ndim != 2:
            raise MalformedInputError(f"{what} must be a 2-D array [n, d], got shape {x.shape}")
        if self._dim is not None and x.shape[1] != self._dim:
            raise MalformedInputError(
                f"{what} have dimension {x.shape[1]}, but the index has dimension {self._dim}"
            )
        if not np.isfinite(x).all():
            raise MalformedInputError(f"{what} contain NaN or infinite values")
        import_faiss().normalize_L2(x)
        return x

    def _new_index(self, faiss: Any, d: int, n: int, *, probe: bool = False) -> Any:
        if self.index_type == "flat":
            return faiss.IndexFlatIP(d)
        if self.index_type == "hnsw":
            idx = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = self.ef_construction
            idx.hnsw.efSearch = self.ef_search
            return idx
        if self.index_type == "ivf":
            nlist = self._ivf_nlist(n)
            if n < MIN_POINTS_PER_CENTROID * nlist:
                warnings.warn(
                    f"IVF with nlist={nlist} trained on N={n} vectors ({n / nlist:.1f} per list; "
                    f"faiss wants ≥ {MIN_POINTS_PER_CENTROID}): consider nlist ≤ "
                    f"{max(1, n // MIN_POINTS_PER_CENTROID)} or index='flat'",
                    stacklevel=4,
                )
            quantizer = faiss.IndexFlatIP(d)
            idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            self._quantizer = quantizer  # keep the quantiser alive as long as the index
            self._apply_params(idx, stacklevel=5)
            return idx
        if probe:  # only the structure matters (is it trained?): any dimension the string accepts
            for d_probe in _PROBE_DIMS:
                idx = _parse_factory(self.index_type, d_probe)
                if idx is not None:
                    return idx
        try:
            idx = faiss.index_factory(int(d), self.index_type, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            msg = str(e).splitlines()[-1].split(": ", 1)[-1] if str(e) else repr(e)
            raise MalformedInputError(
                f"faiss.index_factory(d={d}, {self.index_type!r}) failed: {msg}; expected 'flat', "
                "'ivf', 'hnsw' or a valid factory string such as 'IVF1024,PQ32' (PQ's M must "
                "divide d), 'IVF1024,SQ8' or 'HNSW32'"
            ) from None
        ivf = _ivf_of(idx)
        if ivf is not None and n < int(ivf.nlist):
            raise MalformedInputError(
                f"{self.index_type!r} has nlist={ivf.nlist} but only N={n} vectors: IVF needs at "
                f"least nlist vectors to train (better ≥ {MIN_POINTS_PER_CENTROID}·nlist)"
            )
        hnsw = _hnsw_of(idx)
        if hnsw is not None:
            hnsw.efConstruction = self.ef_construction
        self._apply_params(idx, stacklevel=5)
        return idx

    def _effective_nprobe(self, nlist: int, *, warn: bool = True, stacklevel: int = 2) -> int:
        """The requested nprobe clamped to ``nlist``: the one place that clamps. Warns once per
        (nprobe, nlist) pair, and only for an nprobe the user gave."""
        nprobe = DEFAULT_NPROBE if self.requested_nprobe is None else self.requested_nprobe
        if nprobe <= nlist:
            return nprobe
        if (
            warn
            and self.requested_nprobe is not None
            and (nprobe, nlist) not in self._warned_clamps
        ):
            self._warned_clamps.add((nprobe, nlist))
            warnings.warn(
                f"nprobe={nprobe} > nlist={nlist}: clamped to {nlist}", stacklevel=stacklevel
            )
        return nlist

    def _apply_params(self, idx: Any, *, warn: bool = True, stacklevel: int = 4) -> None:
        """Set nprobe (IVF, clamped) and efSearch (HNSW) on ``idx`` or the IVF / HNSW inside it."""
        ivf = _ivf_of(idx)
        if ivf is not None:
            ivf.nprobe = self._effective_nprobe(int(ivf.nlist), warn=warn, stacklevel=stacklevel)
        hnsw = _hnsw_of(idx)
        if hnsw is not None:
            hnsw.efSearch = self.ef_search

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the search-time knobs of a built (or loaded) index: IVF ``nprobe``, HNSW ``efSearch``."""
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and int(value) < 1:
                raise MalformedInputError(f"{name} must be ≥ 1, got {value}")
        if nprobe is not None:
            self.requested_nprobe = int(nprobe)
        if ef_search is not None:
            self.ef_search = int(ef_search)
        if self.faiss_index is not None and (nprobe is not None or ef_search is not None):
            self._apply_params(self.faiss_index, stacklevel=4)

    def train(
        self, embeddings: np.ndarray, *, n_total: int | None = None, _sampled: bool = False
    ) -> None:
        """Create the (empty) index and train it on ``embeddings`` ``[n, d]`` if it needs training.

        ``n_total`` is the number of vectors the index will hold (default ``n``): the default IVF
        nlist is :func:`default_nlist` of it, not of the sample. More than ``train_size`` rows
        (default :func:`default_train_size`) are subsampled with ``seed``. Replaces any previous
        index; :meth:`add` then appends vectors.
        """
        faiss = import_faiss()
        self.reset()
        x = self._prepare(embeddings, "training embeddings")
        n = x.shape[0]
        if n == 0:
            raise MalformedInputError("train() got no vectors")
        _check_int("n_total", n_total, optional=True)
        idx = self._new_index(faiss, x.shape[1], max(n, n_total or 0))
        if not idx.is_trained:
            if not _sampled:
                ivf = _ivf_of(idx)
                m = self._train_size(n, None if ivf is None else int(ivf.nlist))
                if m < n:
                    rows = np.sort(np.random.default_rng(self.seed).choice(n, m, replace=False))
                    x = x[rows]
            idx.train(x)
        self.faiss_index = idx
        self._dim = int(x.shape[1])

    def add(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add vectors ``[n, d]`` with their ids (L2-normalised inside; the input is not modified).

        The first call creates the index; one that needs training (IVF, PQ, SQ) is trained on a
        seeded random sample of at most ``train_size`` of these vectors (call :meth:`train` first
        to train on another sample). Later calls append.
        """
        faiss = import_faiss()
        ids = [str(i) for i in ids]
        x = self._prepare(embeddings, "embeddings")
        if len(ids) != x.shape[0]:
            raise MalformedInputError(f"got {len(ids)} ids for {x.shape[0]} embeddings")
        if not ids:
            raise MalformedInputError("add() got no vectors")
        seen = self._id_set
        dupes = sorted({i for i in ids if i in seen} | _duplicates(ids))
        if dupes:
            raise MalformedInputError(
                f"duplicate document id(s) {dupes[:10]}" + (" ..." if len(dupes) > 10 else "")
            )
        if self.faiss_index is None:
            idx = self._new_index(faiss, x.shape[1], x.shape[0])
            if not idx.is_trained:
                ivf = _ivf_of(idx)
                m = self._train_size(x.shape[0], None if ivf is None else int(ivf.nlist))
                sample = x
                if m < x.shape[0]:
                    rows = np.random.default_rng(self.seed).choice(x.shape[0], m, replace=False)
                    sample = x[np.sort(rows)]
                idx.train(sample)
                del sample
            self.faiss_index = idx
            self._dim = int(x.shape[1])
        self.faiss_index.add(x)
        self.ids.extend(ids)
        self._id_set.update(ids)

    # ------------------------------------------------------------------ searching
    def search_embeddings(
        self, embeddings: np.ndarray, k: int = 100
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-k for query vectors ``[m, d]``: (ids per query, scores ``[m, k']`` float32).

        ``k`` is clamped to ``ntotal``; faiss's missing results (id −1, possible with IVF/HNSW)
        are removed from the id lists, and their scores are ``-inf``.
        """
        if self.faiss_index is None:
            raise RuntimeError(
                "FaissRetriever is empty: call index(corpus) or add() before searching"
            )
        if int(k) < 1:
            raise MalformedInputError(f"k must be ≥ 1, got {k}")
        q = self._prepare(embeddings, "query embeddings")
        k = min(int(k), self.ntotal)
        scores, labels = self.faiss_index.search(q, k)
        valid = labels >= 0
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        found = self._id_array[np.where(valid, labels, 0)]
        ids = [row[mask].tolist() for row, mask in zip(found, valid, strict=True)]
        return ids, scores

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        """Encode ``queries`` (``{qid: text}``, through ``encode_query``) and return the run
        ``{qid: {docid: score}}`` (top-k)."""
        if self.faiss_index is None:
            raise RuntimeError(
                "FaissRetriever is empty: call index(corpus) or add() before searching"
            )
        check_texts(queries, "queries")
        qids = list(queries)
        if not qids:
            return {}
        ids, scores = self.search_embeddings(self.encode_queries([queries[q] for q in qids]), k=k)
        return {
            qid: dict(zip(row, srow[: len(row)].tolist(), strict=True))
            for qid, row, srow in zip(qids, ids, scores, strict=True)
        }

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration (what :meth:`save` writes to ``config.json``).

        ``nlist`` / ``nprobe`` are the index's values, ``requested_nlist`` / ``requested_nprobe``
        the settings a rebuild starts from.
        """
        return {
            "format_version": _FORMAT_VERSION,
            "index": self.index_type,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "requested_nlist": self.requested_nlist,
            "requested_nprobe": self.requested_nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "ef_construction": self.ef_construction,
            "batch_size": self.batch_size,
            "chunk_size": self.chunk_size,
            "train_size": self.train_size,
            "seed": self.seed,
            "query_prompt_name": self.query_prompt_name,
            "query_prompt": self.query_prompt,
            "document_prompt_name": self.document_prompt_name,
            "document_prompt": self.document_prompt,
            "query_max_length": self.query_max_length,
            "document_max_length": self.document_max_length,
            "dim": self.dim,
            "ntotal": self.ntotal,
        }

    def save(self, path: PathLike) -> Path:
        """Save to a directory: ``index.faiss`` (faiss), ``ids.json`` and ``config.json``.

        The three files are written to a temporary directory beside ``path``, which then replaces
        ``path`` (old directory renamed away, new one renamed in, old one removed), so a crash never
        leaves an index paired with the ids or config of another save. Other entries of an existing
        ``path`` (e.g. a package's metadata beside the index) are moved into the new directory.
        """
        if self.faiss_index is None:
            raise RuntimeError("nothing to save: the FaissRetriever is empty")
        faiss = import_faiss()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"cannot save a FaissRetriever to {path}: it is a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = creation_mode(path, directory=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            # written straight to the file (serialize_index would hold two in-memory copies)
            faiss.write_index(self.faiss_index, str(tmp / _INDEX_FILE))
            write_json(tmp / _IDS_FILE, self.ids, indent=0)
            write_json(tmp / _CONFIG_FILE, self.config())
            os.chmod(tmp, mode)  # mkdtemp makes 0700 directories
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(
        cls, path: PathLike, encoder: Encoder | Any | None = None, *, mmap: bool = False
    ) -> FaissRetriever:
        """Load a retriever written by :meth:`save`; checks the encoder's dimension when one is given.

        ``mmap=True`` memory-maps the index file (``faiss.IO_FLAG_MMAP_IFC``,
        read-only): the vectors / inverted lists stay on disk and are paged in by the OS as
        searches touch them, so an index larger than RAM can be served. Prompts, max lengths and
        the other encoder settings saved in ``config.json`` are restored.

        A config with a missing or ill-typed key, ids that are not a list, an index whose type or
        size does not match the config: :class:`MalformedInputError` naming the file (and key).
        """
        faiss = import_faiss()
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"FaissRetriever directory not found: {path}")
        for name in _FILES:
            if not (path / name).is_file():
                raise FileNotFoundError(f"FaissRetriever file not found: {path / name}")
        config_file, ids_file = path / _CONFIG_FILE, path / _IDS_FILE
        config = _read_json(config_file)
        ids = _read_json(ids_file)
        if not isinstance(config, dict):
            raise MalformedInputError(
                f"{config_file}: expected a JSON object, got {type(config).__name__}"
            )
        missing = [k for k in _REQUIRED_CONFIG if k not in config]
        if missing:
            raise MalformedInputError(
                f"{config_file}: missing key(s) {missing} (has {sorted(config)}); "
                "was it written by FaissRetriever.save?"
            )
        if config["format_version"] != _FORMAT_VERSION:
            raise MalformedInputError(
                f"{config_file}: format_version {config['format_version']!r}, "
                f"expected {_FORMAT_VERSION}"
            )
        kind = config["index"]
        if not isinstance(kind, str) or not kind.strip():
            raise MalformedInputError(
                f"{config_file}: key 'index' is {kind!r}, expected 'flat', 'ivf', 'hnsw' or a "
                "faiss index_factory string"
            )
        settings: dict[str, Any] = {}
        for key, default in (
            ("dim", None),
            ("nlist", None),
            ("nprobe", None),
            ("hnsw_m", None),
            ("ef_search", None),
            ("batch_size", 64),
            ("requested_nlist", config["nlist"]),  # files without it: the built values
            ("requested_nprobe", config["nprobe"]),
        ):
            value = config.get(key, default)
            optional = key in ("nlist", "requested_nlist", "requested_nprobe")
            if not (optional and value is None) and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise MalformedInputError(
                    f"{config_file}: key {key!r} must be an integer ≥ 1"
                    + (" or null" if optional else "")
                    + f", got {value!r}"
                )
            settings[key] = value
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
            raise MalformedInputError(f"{ids_file}: expected a JSON list of document ids")
        if kind not in NAMED_INDEXES and _parse_factory(kind, settings["dim"]) is None:
            raise MalformedInputError(
                f"{config_file}: key 'index' is {kind!r}, expected 'flat', 'ivf', 'hnsw' or a "
                f"faiss index_factory string valid for dimension {settings['dim']}"
            )
        extra: dict[str, Any] = {}
        for key, default, check in (
            ("ef_construction", 40, "int"),
            ("chunk_size", DEFAULT_CHUNK_SIZE, "int"),
            ("train_size", None, "int?"),
            ("seed", 0, "int0"),
            ("query_max_length", None, "int?"),
            ("document_max_length", None, "int?"),
            ("query_prompt_name", None, "str?"),
            ("query_prompt", None, "str?"),
            ("document_prompt_name", None, "str?"),
            ("document_prompt", None, "str?"),
        ):
            value = config.get(key, default)
            ok = (value is None and check.endswith("?")) or (
                isinstance(value, str)
                if check.startswith("str")
                else isinstance(value, int)
                and not isinstance(value, bool)
                and value >= (0 if check == "int0" else 1)
            )
            if not ok:
                raise MalformedInputError(
                    f"{config_file}: key {key!r} must be "
                    + ("a string" if check.startswith("str") else "an integer")
                    + (" or null" if check.endswith("?") else "")
                    + f", got {value!r}"
                )
            extra[key] = value
        index_file = path / _INDEX_FILE
        try:
            if mmap:
                flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
                idx = faiss.read_index(str(index_file), flags)
            else:
                idx = faiss.deserialize_index(np.fromfile(index_file, dtype=np.uint8))
        except RuntimeError as e:  # faiss raises RuntimeError on a corrupt file
            raise MalformedInputError(f"{index_file}: not a faiss index: {e}") from None
        expected = getattr(faiss, _INDEX_CLASSES.get(kind, "Index"))
        if not isinstance(idx, expected) or idx.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise MalformedInputError(
                f"{path / _INDEX_FILE} holds a {type(idx).__name__} ({_metric_name(idx)}), but "
                f"{config_file} says index={kind!r}: expected a "
                f"{_INDEX_CLASSES.get(kind, 'faiss index')} with the inner-product metric"
            )
        if idx.ntotal != len(ids) or idx.d != settings["dim"]:
            raise MalformedInputError(
                f"{path}: index has {idx.ntotal} vectors of dimension {idx.d}, but ids.json has "
                f"{len(ids)} ids and config.json says dimension {settings['dim']}"
            )
        ivf = _ivf_of(idx)
        if ivf is not None and int(ivf.nlist) != settings["nlist"]:
            raise MalformedInputError(
                f"{config_file}: key 'nlist' is {settings['nlist']}, but the IVF index has "
                f"{ivf.nlist} lists"
            )
        self = cls(
            encoder,
            kind,
            nlist=settings["requested_nlist"],
            nprobe=1,  # set below without the clamp warning (given when the index was built)
            hnsw_m=settings["hnsw_m"],
            ef_search=settings["ef_search"],
            batch_size=settings["batch_size"],
            **extra,
        )
        self.requested_nprobe = settings["requested_nprobe"]
        self._apply_params(idx, warn=False)  # a clamp was warned about when it was built
        self.faiss_index = idx
        self.ids = [str(i) for i in ids]
        self._id_set = set(self.ids)
        self._dim = int(idx.d)
        if encoder is not None:
            enc_dim = encoder_dimension(encoder)
            if enc_dim != self._dim:
                raise MalformedInputError(
                    f"encoder produces {enc_dim}-dimensional embeddings, but the index at {path} "
                    f"has dimension {self._dim}"
                )
        return self


_INDEX_CLASSES = {"flat": "IndexFlat", "ivf": "IndexIVF", "hnsw": "IndexHNSW"}


_PROBE_DIMS = (64, 96, 128, 256, 384, 768, 1024, 1536)  # to parse a factory string without d


def _parse_factory(spec: str, d: int) -> Any:
    """``faiss.index_factory(d, spec)`` with the inner-product metric, or ``None`` if it fails."""
    faiss = import_faiss()
    try:
        return faiss.index_factory(int(d), spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        return None


def _ivf_of(idx: Any) -> Any:
    """The ``IndexIVF`` inside ``idx`` (itself, or under a pre-transform), or ``None``."""
    if idx is None:
        return None
    faiss = import_faiss()
    if isinstance(idx, faiss.IndexIVF):
        return idx
    try:
        return faiss.extract_index_ivf(idx)
    except RuntimeError:  # not an IVF index
        return None


def _hnsw_of(idx: Any) -> Any:
    """The ``HNSW`` graph of ``idx`` (an ``IndexHNSW``, possibly under a pre-transform), or ``None``."""
    if idx is None:
        return None
    faiss = import_faiss()
    if isinstance(idx, faiss.IndexPreTransform):
        idx = faiss.downcast_index(idx.index)
    return idx.hnsw if isinstance(idx, faiss.IndexHNSW) else None


@contextlib.contextmanager
def _max_length(encoder: Any, max_length: int | None, role: str | None) -> Iterator[None]:
    """Set ``encoder.max_seq_length`` for one call (a sentence-transformers model), then restore it."""
    if max_length is None:
        yield
        return
    if not hasattr(encoder, "max_seq_length"):
        raise MalformedInputError(
            f"{role}_max_length={max_length} needs an encoder with a max_seq_length attribute "
            f"(a SentenceTransformer), got {type(encoder).__name__}"
        )
    old = encoder.max_seq_length
    encoder.max_seq_length = int(max_length)
    try:
        yield
    finally:
        encoder.max_seq_length = old


def _metric_name(idx: Any) -> str:
    return {0: "inner-product metric", 1: "L2 metric"}.get(
        int(idx.metric_type), f"metric {idx.metric_type}"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedInputError(f"{path}: invalid JSON in saved retriever: {e}") from None


def _replace_dir(new: Path, path: Path) -> None:
    """Put the directory ``new`` at ``path``: rename the old one away, rename ``new`` in, then move
    the old directory's other entries (not the retriever's files) across and remove it."""
    if not path.exists():
        os.rename(new, path)
        return
    old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)  # put the old directory back
        raise
    for entry in old.iterdir():
        if entry.name not in _FILES and not (path / entry.name).exists():
            os.rename(entry, path / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def encoder_dimension(encoder: Any) -> int:
    """Embedding size of an encoder (``get_embedding_dimension`` and older names, or one probe encode)."""
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        fn = getattr(encoder, name, None)
        if callable(fn):
            d = fn()
            if d:
                return int(d)
    emb = encoder.encode(
        ["dimension probe"], batch_size=1, convert_to_numpy=True, show_progress_bar=False
    )
    return int(np.asarray(emb).shape[-1])


def _duplicates(ids: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for i in ids:
        if i in seen:
            dupes.add(i)
        seen.add(i)
    return dupes
