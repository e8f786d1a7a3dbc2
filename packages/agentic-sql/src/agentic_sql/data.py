"""Datasets: BIRD / Spider / Spider 2.0-SQLite loaders, schema rendering, prompts, the synthetic suite.

Every loader reads local files only (no downloads) and returns a ``datasets.Dataset`` with the
columns the environment and the rewards use:

``prompt`` (chat messages), ``question``, ``evidence``, ``db_id``, ``gold_sql``, ``difficulty``,
``question_id``, ``db_root`` and ``schema`` (CREATE TABLE statements with sample values).

Bad inputs fail fast with the file and the entry index: a missing database folder or an unknown
``db_id`` raises :class:`~agentic_sql.errors.DatabaseNotFoundError`, a malformed split file raises
:class:`~agentic_sql.errors.MalformedDatasetError`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from agentic_sql.errors import DatabaseNotFoundError, MalformedDatasetError
from agentic_sql.executor import _decode_text, find_db_path
from papercore.errors import MalformedInputError
from papercore.io import read_table

logger = logging.getLogger(__name__)

__all__ = [
    "SYSTEM_PROMPT_TEXT",
    "SYSTEM_PROMPT_TOOLS",
    "build_prompt",
    "load_bird",
    "load_spider",
    "load_spider2_sqlite",
    "make_synthetic_task_suite",
    "read_split",
    "render_schema",
]

Protocol = Literal["text", "tools"]
#: longest a schema-rendering query may take to find a column's example values (s)
SAMPLE_TIMEOUT_S = 2.0

SYSTEM_PROMPT_TEXT = (
    "You are a data analyst who answers questions by writing SQLite queries.\n"
    "Think inside <think>...</think>. To run an exploratory query write <sql>QUERY</sql>; the result "
    "comes back inside <observation>...</observation>. When you are sure, write the final query "
    "inside <solution>QUERY</solution>, which ends the task. Queries are read-only; you have at most "
    "{max_turns} turns."
)
SYSTEM_PROMPT_TOOLS = (
    "You are a data analyst who answers questions by writing SQLite queries.\n"
    "Use the execute_sql tool to run read-only queries and look at their results, then call "
    "submit_answer with the final query. You have at most {max_turns} turns."
)


# ----------------------------------------------------------------------------------------------
# Schema and prompts
# ----------------------------------------------------------------------------------------------


def _ident(name: str) -> str:
    if name.replace("_", "").isalnum() and not name[:1].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def _sample(v: Any, max_chars: int = 40) -> str:
    if isinstance(v, bytes):
        return "<blob>"
    if isinstance(v, str):
        s = v if len(v) <= max_chars else v[: max_chars - 3] + "..."
        return repr(s)
    return repr(v)


def _open_ro(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    conn.text_factory = _decode_text  # the sandbox's decoding: non-UTF8 text never raises
    return conn


def render_schema(
    db_path: str | os.PathLike, sample_values: int = 3, max_chars: int = 12_000
) -> str:
    """CREATE TABLE statements of a database with up to ``sample_values`` example values per column.

    OmniSQL-style: one line per column with ``-- examples: [...]``, then the foreign keys. When the
    text exceeds ``max_chars`` the sample values are dropped (logged at INFO), then the text is cut
    with a ``-- ... (schema truncated: N more characters, tables not shown: ...)`` marker and a
    WARNING is logged (the model then does not see the whole schema: raise ``max_chars``, e.g.
    ``max_schema_chars=`` of the loaders).

    Raises:
        DatabaseNotFoundError: ``db_path`` does not exist.
    """
    path = Path(db_path)
    if not path.is_file():
        raise DatabaseNotFoundError(path.stem, path)
    conn = _open_ro(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY rowid"
            )
        ]
        info = []
        for t in tables:
            cols = conn.execute(f"PRAGMA table_info({_ident(t)})").fetchall()
            fks = conn.execute(f"PRAGMA foreign_key_list({_ident(t)})").fetchall()
            samples: dict[str, list[Any]] = {}
            if sample_values > 0:
                for c in cols:
                    # a column that is NULL almost everywhere in a huge table could scan for long:
                    # each sampling query gets SAMPLE_TIMEOUT_S, then the column has no examples
                    deadline = time.monotonic() + SAMPLE_TIMEOUT_S
                    conn.set_progress_handler(lambda d=deadline: int(time.monotonic() > d), 10_000)
                    try:
                        samples[c[1]] = [
                            r[0]
                            for r in conn.execute(
                                f"SELECT DISTINCT {_ident(c[1])} FROM {_ident(t)} "
                                f"WHERE {_ident(c[1])} IS NOT NULL LIMIT {int(sample_values)}"
                            )
                        ]
                    except sqlite3.Error:
                        samples[c[1]] = []
            info.append((t, cols, fks, samples))
    finally:
        conn.close()
    text = _render(info, with_samples=sample_values > 0)
    if len(text) > max_chars and sample_values > 0:
        logger.info(
            "schema of %s is %d characters with example values (max_chars=%d): examples dropped",
            path.name,
            len(text),
            max_chars,
        )
        text = _render(info, with_samples=False)
    if len(text) > max_chars:
        text, missing = _truncate_schema(text, info, max_chars)
        full = len(_render(info, with_samples=False))
        logger.warning(
            "schema of %s truncated to %d of %d characters (max_chars=%d)%s; the prompt does not "
            "show the whole schema: raise max_schema_chars",
            path.name,
            len(text),
            full,
            max_chars,
            f", {len(missing)} of {len(info)} tables not shown" if missing else "",
        )
    return text


def _truncate_schema(text: str, info: list[tuple], max_chars: int) -> tuple[str, list[str]]:
    """``text`` cut to at most ``max_chars`` at a line end, with a marker naming what is missing."""
    reserve = 160  # room for the detailed marker
    head = text[: max(0, max_chars - reserve)]
    cut = head.rfind("\n")
    head = head[:cut] if cut > 0 else head
    missing = [t for t, *_ in info if f"CREATE TABLE {_ident(t)} (" not in head]
    names = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    marker = f"\n-- ... (schema truncated: {len(text) - len(head)} more characters"
    marker += f"; tables not shown: {names})" if missing else ")"
    if len(head) + len(marker) > max_chars:  # a tiny budget: the short marker only
        marker = "\n-- ... (schema truncated)"
        head = text[: max(0, max_chars - len(marker))]
    return head + marker, missing


def _render(info: list[tuple], *, with_samples: bool) -> str:
    blocks = []
    for t, cols, fks, samples in info:
        lines = []
        for _cid, name, ctype, notnull, _dflt, pk in cols:
            line = f"  {_ident(name)} {ctype or ''}".rstrip()
            if pk:
                line += " PRIMARY KEY" if sum(1 for c in cols if c[5]) == 1 else ""
            if notnull and not pk:
                line += " NOT NULL"
            line += ","
            vals = samples.get(name) if with_samples else None
            if vals:
                line += " -- examples: [" + ", ".join(_sample(v) for v in vals) + "]"
            lines.append(line)
        pks = [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5]]
        if len(pks) > 1:
            lines.append(f"  PRIMARY KEY ({', '.join(_ident(p) for p in pks)}),")
        for fk in fks:
            ref_col = f"({_ident(fk[4])})" if fk[4] else ""
            lines.append(f"  FOREIGN KEY ({_ident(fk[3])}) REFERENCES {_ident(fk[2])}{ref_col},")
        if lines:
            last = lines[-1]
            head, sep, comment = last.partition(" -- ")
            lines[-1] = head.removesuffix(",") + (sep + comment if sep else "")
        blocks.append(f"CREATE TABLE {_ident(t)} (\n" + "\n".join(lines) + "\n);")
    return "\n\n".join(blocks)


def build_prompt(
    question: str,
    evidence: str | None,
    schema: str,
    protocol: Protocol = "text",
    *,
    max_turns: int = 5,
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages ``[system, user]`` for one question (schema, external knowledge, question).

    ``protocol="text"`` explains the ``<sql>`` / ``<solution>`` tags (SkyRL-SQL); ``"tools"`` the
    ``execute_sql`` / ``submit_answer`` tools (TRL ``environment_factory``). ``system_prompt`` may
    contain ``{max_turns}``.
    """
    if protocol not in ("text", "tools"):
        raise ValueError(f"protocol must be 'text' or 'tools', got {protocol!r}")
    sys_text = system_prompt or (SYSTEM_PROMPT_TEXT if protocol == "text" else SYSTEM_PROMPT_TOOLS)
    user = f"Database schema:\n{schema}\n\n"
    if evidence:
        user += f"External knowledge: {evidence}\n\n"
    user += f"Question: {question}"
    return [
        {"role": "system", "content": sys_text.format(max_turns=max_turns)},
        {"role": "user", "content": user},
    ]


# ----------------------------------------------------------------------------------------------
# Split files
# ----------------------------------------------------------------------------------------------


def read_split(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of a split file: a JSON list of objects (BIRD/Spider) or JSONL (Spider 2.0).

    Raises:
        FileNotFoundError: no such file.
        MalformedDatasetError: not ``.json``/``.jsonl``, invalid JSON (with the line), not a list,
            or an entry that is not an object (with its index).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"split file not found: {p}")
    if p.suffix.lower() not in (".json", ".jsonl"):
        raise MalformedDatasetError(f"{p}: a split file is .json (BIRD, Spider) or .jsonl")
    try:
        return read_table(p)
    except MalformedInputError as e:
        raise MalformedDatasetError(str(e)) from None


def _check_db_root(db_root: str | os.PathLike) -> Path:
    root = Path(db_root)
    if not root.is_dir():
        raise DatabaseNotFoundError(None, root)
    return root


def _build_dataset(
    entries: Sequence[dict[str, Any]],
    db_root: Path,
    *,
    source: Path | str,
    sql_keys: Sequence[str],
    db_key: str = "db_id",
    evidence_key: str = "evidence",
    with_schema: bool = True,
    sample_values: int = 3,
    max_schema_chars: int = 12_000,
    protocol: Protocol = "text",
    max_turns: int = 5,
    extra_columns: Sequence[str] = (),
    limit: int | None = None,
):
    import datasets

    if protocol not in ("text", "tools"):
        raise ValueError(f"protocol must be 'text' or 'tools', got {protocol!r}")
    if limit is not None:
        entries = entries[:limit]
    schemas: dict[str, str] = {}
    rows = []
    for i, e in enumerate(entries):
        sql_key = next((k for k in sql_keys if k in e), None)
        missing = [k for k in (db_key, "question") if k not in e]
        if sql_key is None:
            missing.append(sql_keys[0])
        if missing:
            raise MalformedDatasetError(
                f"{source}: entry {i} lacks the key(s) {missing} (has {sorted(e)})"
            )
        db_id, question, sql = e[db_key], e["question"], e[sql_key]
        for name, val in ((db_key, db_id), ("question", question), (sql_key, sql)):
            if not isinstance(val, str):
                raise MalformedDatasetError(
                    f"{source}: entry {i}: {name!r} must be a string, got {type(val).__name__}"
                )
        try:
            db_file = find_db_path(db_root, db_id)
        except DatabaseNotFoundError as err:
            raise DatabaseNotFoundError(db_id, err.path, detail=f"{source}: entry {i}") from None
        schema = ""
        if with_schema:
            if db_id not in schemas:
                schemas[db_id] = render_schema(db_file, sample_values, max_schema_chars)
            schema = schemas[db_id]
        evidence = e.get(evidence_key) or ""
        if not isinstance(evidence, str):
            evidence = str(evidence)
        row = {
            "prompt": build_prompt(question, evidence, schema, protocol, max_turns=max_turns),
            "question": question,
            "evidence": evidence,
            "db_id": db_id,
            "gold_sql": sql,
            "difficulty": str(e.get("difficulty") or "unknown"),
            "question_id": int(e["question_id"]) if isinstance(e.get("question_id"), int) else i,
            "db_root": str(db_root),
            "schema": schema,
        }
        for col in extra_columns:
            row[col] = e.get(col)
        rows.append(row)
    if not rows:
        raise MalformedDatasetError(f"{source}: no questions")
    return datasets.Dataset.from_list(rows)


def _opts(scope: dict[str, Any]) -> dict[str, Any]:
    """The loader options shared by :func:`load_bird` and :func:`load_spider`."""
    keys = ("with_schema", "sample_values", "max_schema_chars", "protocol", "max_turns")
    return {k: scope[k] for k in (*keys, "extra_columns", "limit")}


def _load_split(
    split_json: str | os.PathLike, db_root: str | os.PathLike, sql_keys: Sequence[str], **opts: Any
):
    root = _check_db_root(db_root)
    entries = read_split(split_json)
    return _build_dataset(entries, root, source=Path(split_json), sql_keys=sql_keys, **opts)


def load_bird(
    split_json: str | os.PathLike,
    db_root: str | os.PathLike,
    *,
    with_schema: bool = True,
    sample_values: int = 3,
    max_schema_chars: int = 12_000,
    protocol: Protocol = "text",
    max_turns: int = 5,
    extra_columns: Sequence[str] = (),
    limit: int | None = None,
):
    """Load a BIRD split (``dev.json`` / ``train.json``) over ``db_root`` (``dev_databases/``).

    Entries need ``db_id``, ``question`` and ``SQL`` (``query`` / ``gold_sql`` accepted too);
    ``evidence``, ``difficulty`` and ``question_id`` are optional. JSONL files work as well.

    Raises:
        DatabaseNotFoundError: ``db_root`` is missing, or an entry's ``db_id`` has no database
            (the message names the entry index).
        MalformedDatasetError: invalid JSON or an entry lacking keys (with the entry index).
    """
    return _load_split(split_json, db_root, ("SQL", "query", "gold_sql"), **_opts(locals()))


def load_spider(
    split_json: str | os.PathLike,
    db_root: str | os.PathLike,
    *,
    with_schema: bool = True,
    sample_values: int = 3,
    max_schema_chars: int = 12_000,
    protocol: Protocol = "text",
    max_turns: int = 5,
    extra_columns: Sequence[str] = (),
    limit: int | None = None,
):
    """Load a Spider split (``dev.json`` / ``train_spider.json``) over ``db_root`` (``database/``).

    Entries need ``db_id``, ``question`` and ``query``. Spider has no difficulty labels or
    evidence: ``difficulty`` is ``"unknown"`` and ``evidence`` empty.

    Raises:
        DatabaseNotFoundError / MalformedDatasetError: as :func:`load_bird`.
    """
    return _load_split(split_json, db_root, ("query", "SQL", "gold_sql"), **_opts(locals()))


def load_spider2_sqlite(
    split_jsonl: str | os.PathLike,
    db_root: str | os.PathLike,
    *,
    gold_sql_dir: str | os.PathLike | None = None,
    documents_dir: str | os.PathLike | None = None,
    with_schema: bool = True,
    sample_values: int = 3,
    max_schema_chars: int = 12_000,
    protocol: Protocol = "text",
    max_turns: int = 5,
    limit: int | None = None,
    require_gold_sql: bool = True,
):
    """Load the SQLite part of Spider 2.0-lite (``spider2-lite.jsonl``).

    Gold *SQL* is what training needs; Spider 2.0's official metric compares *results* with the
    gold CSVs of ``evaluation_suite/gold`` instead: score with
    ``evaluate_ex(..., metric="spider2", gold_dir=...)`` (:mod:`agentic_sql.spider2`), for which
    ``require_gold_sql=False`` keeps the entries without gold SQL (``gold_sql`` is then ``""``;
    such rows can be scored, not trained on). EX against gold SQL (``metric="ex"``) is *not* the
    official Spider 2.0 metric.

    Entries (``instance_id``, ``db``, ``question``, ``external_knowledge``) whose database exists as
    SQLite under ``db_root`` (``<db>.sqlite`` or ``<db>/<db>.sqlite``) are kept; the others
    (BigQuery / Snowflake) are skipped and counted in the log. Gold SQL is read from
    ``gold_sql_dir/<instance_id>.sql``; entries without a (non-empty) gold file are dropped and
    counted in the log, since neither training nor :func:`~agentic_sql.eval.evaluate_ex` can score
    them. ``external_knowledge`` documents are read from ``documents_dir`` when given.

    Raises:
        DatabaseNotFoundError: ``db_root`` is missing. MalformedDatasetError: no SQLite entry, no
        SQLite entry with gold SQL (e.g. ``gold_sql_dir`` not given), bad file.
    """
    root = _check_db_root(db_root)
    src = Path(split_jsonl)
    kept, skipped, no_gold = [], 0, 0
    for i, e in enumerate(read_split(src)):
        missing = [k for k in ("instance_id", "db", "question") if k not in e]
        if missing:
            raise MalformedDatasetError(
                f"{src}: entry {i} lacks the key(s) {missing} (has {sorted(e)})"
            )
        try:
            find_db_path(root, str(e["db"]))
        except DatabaseNotFoundError:
            skipped += 1
            continue
        gold = ""
        if gold_sql_dir is not None:
            gp = Path(gold_sql_dir) / f"{e['instance_id']}.sql"
            if gp.is_file():
                gold = gp.read_text(encoding="utf-8").strip()
        if not gold:
            no_gold += 1
            if require_gold_sql:
                continue
        evidence = ""
        doc = e.get("external_knowledge")
        if doc and documents_dir is not None and (Path(documents_dir) / str(doc)).is_file():
            evidence = (Path(documents_dir) / str(doc)).read_text(encoding="utf-8")
        kept.append(
            {
                "db_id": str(e["db"]),
                "question": e["question"],
                "SQL": gold,
                "evidence": evidence,
                "instance_id": str(e["instance_id"]),
            }
        )
    if skipped:
        logger.info(
            "%s: skipped %d entries whose database is not SQLite under %s", src, skipped, root
        )
    if no_gold and require_gold_sql:
        logger.warning(
            "%s: dropped %d SQLite entries without gold SQL (no non-empty <instance_id>.sql in %s)",
            src,
            no_gold,
            gold_sql_dir,
        )
    elif no_gold:
        logger.info("%s: %d SQLite entries have no gold SQL (kept for scoring)", src, no_gold)
    if not kept:
        if no_gold:
            raise MalformedDatasetError(
                f"{src}: none of the {no_gold} SQLite entries has gold SQL "
                f"(expected <instance_id>.sql files in gold_sql_dir={gold_sql_dir})"
            )
        raise MalformedDatasetError(f"{src}: no entry has a SQLite database under {root}")
    return _build_dataset(
        kept,
        root,
        source=src,
        sql_keys=("SQL",),
        with_schema=with_schema,
        sample_values=sample_values,
        max_schema_chars=max_schema_chars,
        protocol=protocol,
        max_turns=max_turns,
        extra_columns=("instance_id",),
        limit=limit,
    )


# ----------------------------------------------------------------------------------------------
# Synthetic suite
# ----------------------------------------------------------------------------------------------


def make_synthetic_task_suite(
    n_dbs: int = 4,
    n_questions: int = 200,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    *,
    protocol: Protocol = "text",
    with_schema: bool = True,
    sample_values: int = 3,
    max_turns: int = 5,
    **suite_kwargs: Any,
):
    """Build the deterministic synthetic suite, write it in the BIRD layout and load it.

    Returns ``(dataset, db_root)``: the dataset has the loader columns plus ``template`` and
    ``split`` (``"train"`` / ``"test"``); ``db_root`` holds ``<db_id>/<db_id>.sqlite``,
    ``dev.json``, ``train.json``, ``test.json`` and ``dev_gold.sql``. ``out_dir=None`` writes
    to a new temporary folder. ``suite_kwargs`` go to :func:`agentic_sql.synth.build_synthetic_suite`.

    Raises:
        UnsafeOutputDirError: ``out_dir`` is a non-empty folder that is not a synthetic suite written
            by agentic-sql (checked before anything is built or written).
    """
    from agentic_sql.synth import (
        build_synthetic_suite,
        check_suite_output_dir,
        write_synthetic_suite,
    )

    if out_dir is not None:
        check_suite_output_dir(out_dir)
    suite = build_synthetic_suite(n_dbs=n_dbs, n_questions=n_questions, seed=seed, **suite_kwargs)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="agentic-sql-"))
    write_synthetic_suite(suite, root)
    ds = _build_dataset(
        suite.questions,
        root,
        source=root / "dev.json",
        sql_keys=("SQL",),
        with_schema=with_schema,
        sample_values=sample_values,
        protocol=protocol,
        max_turns=max_turns,
        extra_columns=("template", "split"),
    )
    return ds, root
