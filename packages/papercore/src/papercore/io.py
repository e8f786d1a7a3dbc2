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
import stat
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

    On an exception the temporary file is removed and ``path`` is left as it was. The file gets
    the permissions of a plain ``open(path, "w")``: ``0o666 & ~umask`` for a new file, the old
    file's permission bits when ``path`` is replaced (see :func:`creation_mode`).
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
        os.chmod(tmp, creation_mode(path))  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process umask (read from ``/proc/self/status`` where possible, without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the portable way: set and restore (not thread-safe, hence the above)
    os.umask(mask)
    return mask


def creation_mode(path: PathLike, *, directory: bool = False) -> int:
    """Permission bits for (re)writing ``path`` atomically: an existing entry's own bits, else
    ``0o666 & ~umask`` for a file (``0o777 & ~umask`` for a directory), as ``open`` / ``mkdir`` give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return (0o777 if directory else 0o666) & ~current_umask()


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

    Every record is checked, and an error names the record: JSONL and CSV by 1-based line, JSON by
    0-based entry index. Raises :class:`MalformedInputError` (:class:`JSONLError` for JSONL) for
    invalid JSON, a JSON entry that is not an object, a CSV row with more or fewer fields than the
    header, or a record lacking one of the ``required`` keys (naming them).
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
        rows = _read_json_list(path)
        where = [f"entry {i}" for i in range(len(rows))]
    else:
        rows, where = _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    for row, at in zip(rows, where, strict=True):
        missing = [k for k in required if k not in row]
        if missing:
            raise MalformedInputError(
                f"{path}, {at}: missing required column(s) {missing}; has {sorted(row)}"
            )
    return rows


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as e:
            raise MalformedInputError(
                f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
    if not isinstance(data, list):
        raise MalformedInputError(
            f"{path}: expected a JSON list of objects, got {type(data).__name__}"
        )
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise MalformedInputError(
                f"{path}: entry {i} is a {type(row).__name__}, expected an object"
            )
    return data


def _read_csv(path: Path, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, where = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        for row in reader:
            line = f"line {reader.line_num}"
            if None in row:  # DictReader's restkey: more fields than the header
                raise MalformedInputError(
                    f"{path}, {line}: {len(row) - 1 + len(row[None])} fields, the header has "
                    f"{len(reader.fieldnames or ())}"
                )
            short = [k for k, v in row.items() if v is None]  # restval: fewer fields
            if short:
                raise MalformedInputError(
                    f"{path}, {line}: no value for column(s) {short} (the row has fewer fields "
                    "than the header)"
                )
            rows.append(row)
            where.append(line)
    return rows, where


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
