"""Reading and writing records: JSONL (strict, line-numbered errors), CSV/JSON tables, atomic writes.

Every writer goes through :func:`atomic_write`: the data is written to a temporary file in the
destination folder and renamed over the target only once complete, so a crash never leaves half a
file behind (and never clobbers an existing good file).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from papercore.errors import JSONLError, MalformedInputError

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def iter_jsonl(path: PathLike, *, required: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line of a JSONL file.

    Raises :class:`JSONLError` naming the file and 1-based line when a line is not valid JSON, is
    not a JSON object, or lacks one of the ``required`` keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSONL file not found: {path}")
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise JSONLError(
                    str(path), lineno, f"invalid JSON ({e.msg} at column {e.colno})"
                ) from None
            if not isinstance(row, dict):
                raise JSONLError(
                    str(path), lineno, f"expected a JSON object, got {type(row).__name__}"
                )
            missing = [k for k in required if k not in row]
            if missing:
                raise JSONLError(
                    str(path), lineno, f"missing required key(s) {missing}; has {sorted(row)}"
                )
            yield row


def read_jsonl(path: PathLike, *, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read a whole JSONL file into a list of dicts (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path, required=required))


def write_jsonl(path: PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Atomically write ``rows`` as JSONL; returns the number of rows written."""
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_default))
            fh.write("\n")
            n += 1
    return n


def append_jsonl(path: PathLike, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append rows to a JSONL file (for resumable jobs: each line is flushed as it is written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
            fh.flush()
            n += 1
    return n


def write_json(path: PathLike, obj: Any, *, indent: int = 2) -> None:
    """Atomically write one JSON document."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent, default=_json_default)
        fh.write("\n")


def read_table(path: PathLike, *, required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read records from ``.jsonl``, ``.json`` (a list of objects) or ``.csv``/``.tsv``.

    Raises :class:`MalformedInputError` when required columns are missing, naming them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise MalformedInputError(
            f"{path}: unsupported file type {suffix!r}; expected .jsonl, .json, .csv or .tsv"
        )
    if suffix == ".jsonl":
        return read_jsonl(path, required=required)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if suffix == ".json":
        with path.open(encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as e:
                raise MalformedInputError(
                    f"{path}: invalid JSON at line {e.lineno}: {e.msg}"
                ) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise MalformedInputError(f"{path}: expected a JSON list of objects")
        rows = data
    else:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    if required and rows:
        missing = [k for k in required if k not in rows[0]]
        if missing:
            raise MalformedInputError(
                f"{path}: missing required column(s) {missing}; has {sorted(rows[0])}"
            )
    return rows


def to_dataset(rows: Sequence[Mapping[str, Any]]):
    """Turn records into a 🤗 ``datasets.Dataset`` (needs the ``datasets`` package)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_dataset needs the `datasets` package: pip install 'papercore[datasets]'"
        ) from e
    return datasets.Dataset.from_list([dict(r) for r in rows])


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
