"""A thin dense retriever: any encoder + a faiss index (flat / IVF / HNSW) over L2-normalised vectors.

Scores are inner products of L2-normalised float32 vectors, i.e. cosine similarities. Document ids
are kept in a parallel list (position in the faiss index = position in the list).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.io import atomic_write, creation_mode, write_json
from papercore.retrieval.data import Run

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
IndexType = Literal["flat", "ivf", "hnsw"]

MIN_POINTS_PER_CENTROID = 39  # faiss k-means warns below this many training points per centroid
DEFAULT_NPROBE = 16
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


class FaissRetriever:
    """Dense retrieval with an encoder and a faiss index.

    Args:
        encoder: a ``SentenceTransformer`` or any object with
            ``encode(list[str], batch_size=, convert_to_numpy=True, show_progress_bar=) -> [n, d]``;
            ``None`` when only :meth:`add` / :meth:`search_embeddings` are used.
        index: ``"flat"`` (``IndexFlatIP``, exact), ``"ivf"`` (``IndexIVFFlat`` over an
            ``IndexFlatIP`` quantiser, inner-product metric, trained on all added vectors) or
            ``"hnsw"`` (``IndexHNSWFlat``, inner-product metric).
        nlist: IVF lists; default :func:`default_nlist` of the N vectors of each build
            (``min(4·√N, N/39)``). An explicit ``nlist > N`` raises.
        nprobe: IVF lists searched per query; default ``None`` = 16. Clamped to the index's
            nlist: with a warning when given explicitly, silently for the default.

    The settings stay as given: :attr:`requested_nlist` / :attr:`requested_nprobe` are what was
    asked for (``None`` = default), :attr:`nlist` / :attr:`nprobe` what the current IVF index
    uses (the requested values before anything is built). A rebuild (:meth:`reset` +
    :meth:`add`, or :meth:`index`) starts again from the requested values: a default nlist is
    recomputed for the new N and a clamped nprobe is not kept.
        hnsw_m, ef_search: HNSW graph degree M and search beam efSearch.
        batch_size, show_progress: passed to ``encoder.encode``.
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
        batch_size: int = 64,
        show_progress: bool = False,
    ):
        if index not in ("flat", "ivf", "hnsw"):
            raise MalformedInputError(f"index must be 'flat', 'ivf' or 'hnsw', got {index!r}")
        if encoder is not None and not callable(getattr(encoder, "encode", None)):
            raise MalformedInputError(
                f"encoder must have an .encode(texts, ...) method, got {type(encoder).__name__}"
            )
        for name, value in (
            ("nprobe", DEFAULT_NPROBE if nprobe is None else nprobe),
            ("hnsw_m", hnsw_m),
            ("ef_search", ef_search),
            ("batch_size", batch_size),
        ):
            if int(value) < 1:
                raise MalformedInputError(f"{name} must be ≥ 1, got {value}")
        if nlist is not None and int(nlist) < 1:
            raise MalformedInputError(f"nlist must be ≥ 1, got {nlist}")
        self.encoder = encoder
        self.index_type: IndexType = index
        self.requested_nlist: int | None = None if nlist is None else int(nlist)
        self.requested_nprobe: int | None = None if nprobe is None else int(nprobe)
        self._warned_clamps: set[tuple[int, int]] = set()
        if index == "ivf" and self.requested_nlist is not None:
            self._effective_nprobe(self.requested_nlist, stacklevel=3)  # warn early
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.faiss_index: Any = None
        self.ids: list[str] = []
        self._id_array = np.empty(0, dtype=object)
        self._dim: int | None = None

    # ------------------------------------------------------------------ properties
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
        if self.index_type == "ivf" and self.faiss_index is not None:
            return int(self.faiss_index.nlist)
        return self.requested_nlist

    @property
    def nprobe(self) -> int:
        """IVF lists searched per query: the requested nprobe (default 16), at most the index's nlist."""
        nprobe = DEFAULT_NPROBE if self.requested_nprobe is None else self.requested_nprobe
        nlist = self.nlist if self.index_type == "ivf" else None
        return nprobe if nlist is None else min(nprobe, nlist)

    @nlist.setter
    def nlist(self, value: int | None) -> None:
        if value is not None and int(value) < 1:
            raise MalformedInputError(f"nlist must be ≥ 1, got {value}")
        self.requested_nlist = None if value is None else int(value)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.set_search_params(nprobe=value)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"FaissRetriever(index={self.index_type!r}, ntotal={self.ntotal}, dim={self.dim})"

    # ------------------------------------------------------------------ building
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts with the encoder -> contiguous float32 ``[n, d]`` (not yet normalised)."""
        if self.encoder is None:
            raise RuntimeError(
                "this FaissRetriever has no encoder: pass encoder= (or use add()/search_embeddings())"
            )
        emb = self.encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress,
        )
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise MalformedInputError(
                f"encoder returned shape {emb.shape}, expected [{len(texts)}, d]"
            )
        return emb

    def index(self, corpus: Mapping[str, str]) -> None:
        """Encode ``corpus`` (``{docid: text}``) in batches and index it, replacing any previous index."""
        check_texts(corpus, "corpus")
        if not corpus:
            raise MalformedInputError("corpus is empty")
        ids = list(corpus)
        emb = self.encode([corpus[i] for i in ids])
        self.reset()
        self.add(ids, emb)

    def reset(self) -> None:
        """Drop the index and ids (the configuration stays)."""
        self.faiss_index = None
        self._quantizer = None
        self.ids = []
        self._id_array = np.empty(0, dtype=object)
        self._dim = None

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

    def _new_index(self, faiss: Any, d: int, n: int) -> Any:
        if self.index_type == "flat":
            return faiss.IndexFlatIP(d)
        if self.index_type == "hnsw":
            idx = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efSearch = self.ef_search
            return idx
        nlist = self.requested_nlist if self.requested_nlist is not None else default_nlist(n)
        if n < nlist:
            raise MalformedInputError(
                f"IVF needs at least nlist={nlist} vectors to train, got N={n}: "
                f"use nlist ≤ N/{MIN_POINTS_PER_CENTROID} (≈{max(1, n // MIN_POINTS_PER_CENTROID)}) "
                f"or index='flat'"
            )
        if n < MIN_POINTS_PER_CENTROID * nlist:
            warnings.warn(
                f"IVF with nlist={nlist} trained on N={n} vectors ({n / nlist:.1f} per list; faiss "
                f"wants ≥ {MIN_POINTS_PER_CENTROID}): consider nlist ≤ "
                f"{max(1, n // MIN_POINTS_PER_CENTROID)} or index='flat'",
                stacklevel=4,
            )
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        self._quantizer = quantizer  # keep the quantiser alive as long as the index
        self._apply_nprobe(idx, stacklevel=5)
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

    def _apply_nprobe(self, idx: Any, *, warn: bool = True, stacklevel: int = 4) -> None:
        idx.nprobe = self._effective_nprobe(int(idx.nlist), warn=warn, stacklevel=stacklevel)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the search-time knobs of a built (or loaded) index: IVF ``nprobe``, HNSW ``efSearch``."""
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and int(value) < 1:
                raise MalformedInputError(f"{name} must be ≥ 1, got {value}")
        if nprobe is not None:
            self.requested_nprobe = int(nprobe)
            if self.index_type == "ivf" and self.faiss_index is not None:
                self._apply_nprobe(self.faiss_index, stacklevel=4)
        if ef_search is not None:
            self.ef_search = int(ef_search)
            if self.index_type == "hnsw" and self.faiss_index is not None:
                self.faiss_index.hnsw.efSearch = self.ef_search

    def add(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Add vectors ``[n, d]`` with their ids (L2-normalised inside; the input is not modified).

        The first call creates the index (IVF: trained on these vectors); later calls append.
        """
        faiss = import_faiss()
        ids = [str(i) for i in ids]
        x = self._prepare(embeddings, "embeddings")
        if len(ids) != x.shape[0]:
            raise MalformedInputError(f"got {len(ids)} ids for {x.shape[0]} embeddings")
        if not ids:
            raise MalformedInputError("add() got no vectors")
        seen = set(self.ids)
        dupes = sorted({i for i in ids if i in seen} | _duplicates(ids))
        if dupes:
            raise MalformedInputError(
                f"duplicate document id(s) {dupes[:10]}" + (" ..." if len(dupes) > 10 else "")
            )
        if self.faiss_index is None:
            idx = self._new_index(faiss, x.shape[1], x.shape[0])
            if not idx.is_trained:
                idx.train(x)
            self.faiss_index = idx
            self._dim = int(x.shape[1])
        self.faiss_index.add(x)
        self.ids.extend(ids)
        self._id_array = np.asarray(self.ids, dtype=object)

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
        """Encode ``queries`` (``{qid: text}``) and return the run ``{qid: {docid: score}}`` (top-k)."""
        if self.faiss_index is None:
            raise RuntimeError(
                "FaissRetriever is empty: call index(corpus) or add() before searching"
            )
        check_texts(queries, "queries")
        qids = list(queries)
        if not qids:
            return {}
        ids, scores = self.search_embeddings(self.encode([queries[q] for q in qids]), k=k)
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
            "batch_size": self.batch_size,
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
            blob = faiss.serialize_index(self.faiss_index)
            with atomic_write(tmp / _INDEX_FILE, "wb") as fh:
                fh.write(np.asarray(blob).tobytes())
            write_json(tmp / _IDS_FILE, self.ids, indent=0)
            write_json(tmp / _CONFIG_FILE, self.config())
            os.chmod(tmp, mode)  # mkdtemp makes 0700 directories
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: PathLike, encoder: Encoder | Any | None = None) -> FaissRetriever:
        """Load a retriever written by :meth:`save`; checks the encoder's dimension when one is given.

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
        if kind not in _INDEX_CLASSES:
            raise MalformedInputError(
                f"{config_file}: key 'index' is {kind!r}, expected 'flat', 'ivf' or 'hnsw'"
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
        try:
            idx = faiss.deserialize_index(
                np.frombuffer((path / _INDEX_FILE).read_bytes(), dtype=np.uint8)
            )
        except RuntimeError as e:  # faiss raises RuntimeError on a corrupt file
            raise MalformedInputError(f"{path / _INDEX_FILE}: not a faiss index: {e}") from None
        expected = getattr(faiss, _INDEX_CLASSES[kind])
        if not isinstance(idx, expected) or idx.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise MalformedInputError(
                f"{path / _INDEX_FILE} holds a {type(idx).__name__} ({_metric_name(idx)}), but "
                f"{config_file} says index={kind!r}: expected a {_INDEX_CLASSES[kind]} with the "
                "inner-product metric"
            )
        if idx.ntotal != len(ids) or idx.d != settings["dim"]:
            raise MalformedInputError(
                f"{path}: index has {idx.ntotal} vectors of dimension {idx.d}, but ids.json has "
                f"{len(ids)} ids and config.json says dimension {settings['dim']}"
            )
        if kind == "ivf" and int(idx.nlist) != settings["nlist"]:
            raise MalformedInputError(
                f"{config_file}: key 'nlist' is {settings['nlist']}, but the IVF index has "
                f"{idx.nlist} lists"
            )
        self = cls(
            encoder,
            kind,
            nlist=settings["requested_nlist"],
            nprobe=1,  # set below without the clamp warning (given when the index was built)
            hnsw_m=settings["hnsw_m"],
            ef_search=settings["ef_search"],
            batch_size=settings["batch_size"],
        )
        self.requested_nprobe = settings["requested_nprobe"]
        if kind == "ivf":
            self._apply_nprobe(idx, warn=False)  # warned when it was built
        elif kind == "hnsw":
            idx.hnsw.efSearch = self.ef_search
        self.faiss_index = idx
        self.ids = [str(i) for i in ids]
        self._id_array = np.asarray(self.ids, dtype=object)
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
