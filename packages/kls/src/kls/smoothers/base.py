"""What every label smoother shares: label bookkeeping, the dataset column, the leakage guard, and
``save_pretrained`` / ``from_pretrained`` (a directory with ``config.json`` + ``state.npz``)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls.errors import (
    ConfigError,
    EmptyInputError,
    NotFittedError,
    OutputExistsError,
    SingleClassError,
    UnknownLabelError,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
STATE_FILE = "state.npz"
TOKENIZER_DIR = "tokenizer"
FORMAT = "kls-label-smoother"
FORMAT_VERSION = 1

#: smoother classes ``from_pretrained`` may rebuild (``config.json``'s ``"class"``)
CLASSES: dict[str, str] = {
    "ReferenceKeywordSmoother": "kls.smoothers.reference:ReferenceKeywordSmoother",
    "CTFIDFKeywordSmoother": "kls.smoothers.ctfidf:CTFIDFKeywordSmoother",
    "Chi2KeywordSmoother": "kls.smoothers.chi2:Chi2KeywordSmoother",
    "LabelNameKeywordSmoother": "kls.smoothers.label_names:LabelNameKeywordSmoother",
    "GivenKeywordSmoother": "kls.smoothers.given:GivenKeywordSmoother",
    "UniformLabelSmoother": "kls.smoothers.uniform:UniformLabelSmoother",
}


def import_class(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


class LabelSmoother:
    """Base of the smoothers: classes, index lookup, clear errors, the soft-label dataset column."""

    classes_: list[Any]

    # ------------------------------------------------------------------ labels
    def _fit_labels(self, labels: Sequence[Any]) -> np.ndarray:
        """Class indices of the training labels; every class with at least one text is kept.

        Long-tailed label sets are accepted: a class seen once gets the same formulas as any other
        (its statistics simply come from one text); an INFO log lists such classes.
        """
        labels = list(labels)
        if any(isinstance(y, (list, tuple, set, np.ndarray)) for y in labels):
            raise NotImplementedError(
                "multi-label input (a list of labels per text) is not supported; give one label per text"
            )
        try:
            self.classes_ = sorted(set(labels))
        except TypeError:
            self.classes_ = sorted(set(labels), key=str)
        if len(self.classes_) < 2:
            raise SingleClassError(
                f"soft labels need at least 2 classes; the training labels hold only {self.classes_}"
            )
        self._index = {c: i for i, c in enumerate(self.classes_)}
        idx = np.fromiter((self._index[y] for y in labels), dtype=np.int64, count=len(labels))
        self.class_counts_ = np.bincount(idx, minlength=len(self.classes_))
        single = [self.classes_[i] for i in np.flatnonzero(self.class_counts_ == 1)]
        if single:
            logger.info(
                "%d of %d classes have a single training text (%s%s): their keywords come from that text",
                len(single),
                len(self.classes_),
                single[:10],
                " ..." if len(single) > 10 else "",
            )
        return idx

    def label_index(self, labels: Sequence[Any]) -> np.ndarray:
        """Class indices of ``labels``; :class:`UnknownLabelError` lists labels not seen at fit time."""
        if not hasattr(self, "_index"):
            raise NotFittedError(f"{type(self).__name__}: call fit(texts, labels) first")
        labels = list(labels)
        if any(isinstance(y, (list, tuple, set, np.ndarray)) for y in labels):
            raise NotImplementedError("multi-label input is not supported; give one label per text")
        unknown = sorted({y for y in labels if y not in self._index}, key=str)
        if unknown:
            raise UnknownLabelError(
                f"labels {unknown} were not seen at fit time; known labels: {self.classes_}"
            )
        return np.fromiter((self._index[y] for y in labels), dtype=np.int64, count=len(labels))

    def transform(self, texts: Sequence[str], labels: Sequence[Any] | None = None) -> np.ndarray:
        raise NotImplementedError

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> LabelSmoother:
        raise NotImplementedError

    def fit_transform(self, texts: Sequence[str], labels: Sequence[Any]) -> np.ndarray:
        return self.fit(texts, labels).transform(texts, labels)

    def to_dataset(
        self,
        ds: Any,
        text_col: str = "text",
        label_col: str = "label",
        out_col: str = "soft_label",
    ) -> Any:
        """Return ``ds`` (a 🤗 ``datasets.Dataset``) with the soft labels added as ``out_col`` (list[float])."""
        for col in (text_col, label_col):
            if col not in ds.column_names:
                raise KeyError(f"dataset has no column {col!r}; has {ds.column_names}")
        soft = self.transform(ds[text_col], ds[label_col])
        if out_col in ds.column_names:
            ds = ds.remove_columns(out_col)
        return ds.add_column(out_col, soft.astype(np.float32).tolist())

    # ------------------------------------------------------------- leakage guard
    def _remember_fit_texts(self, texts: Sequence[str]) -> None:
        self.fit_text_hashes_ = np.unique(_hashes(texts))

    def fit_overlap(self, texts: Sequence[str]) -> float:
        """Fraction of ``texts`` that were among the texts ``fit`` saw (exact string match)."""
        seen = getattr(self, "fit_text_hashes_", None)
        texts = list(texts)
        if seen is None:
            raise NotFittedError(f"{type(self).__name__}: call fit(texts, labels) first")
        if not texts:
            return 0.0
        return float(np.isin(_hashes(texts), seen).mean())

    def warn_if_fit_texts(
        self, texts: Sequence[str], what: str = "evaluation", threshold: float = 0.5
    ) -> bool:
        """Warn (and return True) when at least ``threshold`` of ``texts`` were fit texts.

        Keywords fitted on evaluation data cannot be detected in general; evaluation helpers
        (:func:`kls.experiment.train_and_evaluate`, ``kls eval --smoother``) call this to catch the
        plain case of fitting on (most of) the split being evaluated, in any order.
        """
        frac = self.fit_overlap(texts)
        if frac >= threshold and frac > 0:
            logger.warning(
                "%.0f%% of the %s texts are texts KLS was fitted on: its keywords leak their labels",
                100 * frac,
                what,
            )
            return True
        return False

    # ---------------------------------------------------------------- save / load
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON metadata, arrays) of the fitted state; subclasses extend it."""
        return {}, {"class_counts": self.class_counts_}

    def _load_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.class_counts_ = arrays["class_counts"]

    def _config_dict(self) -> dict[str, Any]:
        return {}

    def _save_tokenizer(self, path: Path) -> dict[str, Any]:
        return {"kind": None}

    def save_pretrained(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the fitted smoother to directory ``path`` (``config.json`` + ``state.npz``).

        Refuses (:class:`~kls.errors.OutputExistsError`) when ``path`` is a file or a non-empty
        directory, unless ``overwrite=True``. Reload with :meth:`from_pretrained`.
        """
        if not hasattr(self, "_index"):
            raise NotFittedError(f"{type(self).__name__}: fit before save_pretrained")
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
            what = "a file" if not path.is_dir() else "a non-empty directory"
            raise OutputExistsError(
                f"{path} is {what}; choose a new directory or pass overwrite=True"
            )
        if path.exists() and not path.is_dir():
            raise OutputExistsError(f"{path} is a file; save_pretrained writes a directory")
        path.mkdir(parents=True, exist_ok=True)
        meta, arrays = self._state()
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "config": self._config_dict(),
            "classes": [_json_label(c) for c in self.classes_],
            "tokenizer": self._save_tokenizer(path),
            "state": meta,
        }
        arrays = dict(arrays)
        arrays["fit_text_hashes"] = getattr(self, "fit_text_hashes_", np.zeros(0, np.uint64))
        with open(path / STATE_FILE, "wb") as f:
            np.savez(f, **arrays)
        (path / CONFIG_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> LabelSmoother:
        """Load a smoother written by :meth:`save_pretrained` (``tokenizer=`` when it used a callable)."""
        path = Path(path)
        cfg_file = path / CONFIG_FILE
        if not cfg_file.is_file() or not (path / STATE_FILE).is_file():
            raise ConfigError(
                f"{path} is not a saved kls smoother: expected {CONFIG_FILE} and {STATE_FILE} in it"
            )
        doc = json.loads(cfg_file.read_text())
        if doc.get("format") != FORMAT:
            raise ConfigError(f"{cfg_file}: format {doc.get('format')!r}, expected {FORMAT!r}")
        if doc.get("format_version", 0) > FORMAT_VERSION:
            raise ConfigError(
                f"{cfg_file}: format version {doc['format_version']} is newer than this kls "
                f"({FORMAT_VERSION}); upgrade kls"
            )
        name = doc.get("class")
        if name not in CLASSES:
            raise ConfigError(f"{cfg_file}: unknown smoother class {name!r}; known {list(CLASSES)}")
        klass = import_class(CLASSES[name])
        if not issubclass(klass, cls):
            raise ConfigError(f"{path} holds a {name}, not a {cls.__name__}")
        with np.load(path / STATE_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        obj = klass._from_saved(doc, path, **kwargs)
        obj.classes_ = [_label(c) for c in doc["classes"]]
        obj._index = {c: i for i, c in enumerate(obj.classes_)}
        obj.fit_text_hashes_ = arrays.pop("fit_text_hashes")
        obj._load_state(doc.get("state", {}), arrays)
        return obj

    @classmethod
    def _from_saved(cls, doc: Mapping[str, Any], path: Path, **kwargs: Any) -> LabelSmoother:
        raise NotImplementedError


# ------------------------------------------------------------------------ helpers
def as_texts(texts: Sequence[str], allow_empty: bool = False) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts and not allow_empty:
        raise EmptyInputError("no texts given (an empty sequence)")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts


def _hashes(texts: Sequence[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=np.uint64)
    for i, t in enumerate(texts):
        h = hashlib.blake2b(t.encode("utf-8", "replace"), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little")
    return out


def _json_label(c: Any) -> Any:
    if isinstance(c, np.generic):
        c = c.item()
    if isinstance(c, tuple):
        return [_json_label(x) for x in c]
    if c is None or isinstance(c, (str, int, float, bool)):
        return c
    raise ConfigError(
        f"label {c!r} ({type(c).__name__}) cannot be saved: labels must be str, int, float or bool"
    )


def _label(c: Any) -> Any:
    return tuple(_label(x) for x in c) if isinstance(c, list) else c


def sparse_to_arrays(name: str, M: sp.spmatrix) -> dict[str, np.ndarray]:
    M = sp.csr_matrix(M)
    return {
        f"{name}.data": M.data,
        f"{name}.indices": M.indices,
        f"{name}.indptr": M.indptr,
        f"{name}.shape": np.asarray(M.shape, dtype=np.int64),
    }


def sparse_from_arrays(name: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    try:
        return sp.csr_matrix(
            (arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]),
            shape=tuple(arrays[f"{name}.shape"]),
        )
    except KeyError as e:
        raise ConfigError(f"saved state has no array {e.args[0]!r}") from None


__all__ = ["LabelSmoother", "as_texts", "sparse_from_arrays", "sparse_to_arrays"]
