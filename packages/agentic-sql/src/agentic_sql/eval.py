"""Evaluation: BIRD execution accuracy with a difficulty breakdown, greedy multi-turn agent evaluation,
and output files the official BIRD scripts read.

* :func:`evaluate_ex` — BIRD EX: a prediction is correct iff ``set(pred_rows) == set(gold_rows)``
  (:func:`~agentic_sql.compare.ex_match`), with a 30 s per-query timeout; a timeout or an error is
  wrong. Reported overall and for ``simple`` / ``moderate`` / ``challenging``.
* :func:`run_agent_eval` — runs an agent on every question (greedy decoding, up to ``max_turns``
  turns), takes its final SQL and scores it with :func:`evaluate_ex`. The agent is either a model +
  tokenizer (text protocol, through :func:`agentic_sql.rollout.run_text_episodes`) or any callable
  ``agent(row) -> final SQL`` / object with ``predict_batch(rows)``.
* :func:`write_bird_outputs` — ``predict_<mode>.json`` (``{"0": "SQL\\t----- bird -----\\tdb_id"}``),
  ``<mode>_gold.sql`` (``SQL\\tdb_id`` lines) and ``<mode>.json`` (difficulties), the inputs of
  DAMO-ConvAI's ``bird/llm/src/evaluation.py``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentic_sql.compare import ex_match
from agentic_sql.executor import ExecResult, SQLiteExecutor

logger = logging.getLogger(__name__)

__all__ = [
    "BIRD_SEPARATOR",
    "DIFFICULTY_ORDER",
    "NO_ANSWER_SQL",
    "AgentAnswer",
    "EVAL_OUTPUT_MARKER",
    "TextProtocolAgent",
    "ToolsProtocolAgent",
    "check_eval_output_dir",
    "evaluate_ex",
    "format_bird_table",
    "gold_is_ordered",
    "make_generation_backend",
    "make_oracle_agent",
    "one_line_sql",
    "read_bird_predictions",
    "read_predictions",
    "run_agent_eval",
    "write_bird_outputs",
]

#: separator between SQL and db_id in BIRD's prediction files
BIRD_SEPARATOR = "\t----- bird -----\t"
#: written for a question without an answer: fails on every database, so it is scored wrong
NO_ANSWER_SQL = "SELECT * FROM __no_answer__"
DIFFICULTY_ORDER = ("simple", "moderate", "challenging")


@dataclass(frozen=True)
class AgentAnswer:
    """An agent's output for one question: the final SQL (``None`` = no answer) and its turn count."""

    final_sql: str | None
    n_turns: int = 0
    text: str = ""


# ----------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------


def _rows(dataset: Any) -> list[dict[str, Any]]:
    if hasattr(dataset, "to_list"):
        rows = dataset.to_list()
    else:
        rows = [dict(r) for r in dataset]
    for i, r in enumerate(rows):
        if "gold_sql" not in r:
            for k in ("SQL", "query"):
                if k in r:
                    r["gold_sql"] = r[k]
                    break
        missing = [k for k in ("db_id", "gold_sql") if k not in r]
        if missing:
            raise ValueError(
                f"dataset row {i} lacks the column(s) {missing}; evaluation needs db_id and gold_sql"
            )
    return rows


def _difficulty(row: dict[str, Any]) -> str:
    return str(row.get("difficulty") or "unknown")


# ----------------------------------------------------------------------------------------------
# EX
# ----------------------------------------------------------------------------------------------


def evaluate_ex(
    preds: Sequence[str | None],
    dataset: Any,
    executor: SQLiteExecutor,
    *,
    timeout_s: float = 30.0,
    num_workers: int = 2,
    max_rows: int | None = None,
    order_sensitive: bool | Literal["auto"] = False,
    float_round: int | None = None,
    output_dir: str | os.PathLike | None = None,
    data_mode: str = "dev",
    details: bool = False,
    metric: Literal["ex", "spider_ex", "spider2"] = "ex",
    gold_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """BIRD execution accuracy of ``preds`` (one SQL per dataset row, ``None`` = no answer).

    ``metric="spider_ex"`` scores with Spider's official test-suite semantics instead
    (:func:`agentic_sql.spider_eval.evaluate_spider_ex`: column permutations, rows as bags, ORDER BY
    anywhere in gold, every database variant); ``metric="spider2"`` with Spider 2.0-lite's official
    gold CSVs under ``gold_dir`` (:func:`agentic_sql.spider2.evaluate_spider2_sqlite`). Both use
    ``timeout_s``, ``num_workers`` and ``details``; the BIRD-only options do not apply.

    Args:
        dataset: rows with ``db_id``, ``gold_sql`` (or BIRD's ``SQL``), optional ``difficulty``.
        executor: the sandbox; gold results go through its cache.
        timeout_s: per-query timeout (BIRD's ``meta_time_out`` = 30 s).
        num_workers: queries executed in parallel.
        max_rows: row cap (``None`` = every row, as the official script's ``fetchall``); with a cap,
            a truncated prediction or gold result is not comparable and counts as wrong.
        order_sensitive: compare rows in order; ``"auto"`` = only when the gold query's outermost
            SELECT has ORDER BY — an *approximation* of Spider's rule (still set semantics, fixed
            column order, one database): use ``metric="spider_ex"`` for Spider's official metric.
            BIRD ignores order (``False``).
        output_dir: also write the BIRD files (:func:`write_bird_outputs`), ``results.jsonl``
            (one line per question) and ``metrics.json``.
        details: include the per-question records under ``"per_question"``.

    Returns:
        ``{"ex", "n", "n_correct", "n_timeout", "n_error", "n_gold_error", "n_no_answer",
        "by_difficulty": {name: {"ex", "n", "n_correct"}}, "timeout_s"}``; a gold query that fails
        counts as wrong (as in the official script) and is counted in ``n_gold_error``.
    """
    if metric == "spider_ex":
        from agentic_sql.spider_eval import evaluate_spider_ex

        return evaluate_spider_ex(
            preds, dataset, executor, timeout_s=timeout_s, num_workers=num_workers, details=details
        )
    if metric == "spider2":
        from agentic_sql.spider2 import evaluate_spider2_sqlite

        if gold_dir is None:
            raise ValueError(
                "metric='spider2' needs gold_dir= (spider2-lite/evaluation_suite/gold)"
            )
        return evaluate_spider2_sqlite(
            preds,
            dataset,
            executor,
            gold_dir,
            timeout_s=timeout_s,
            num_workers=num_workers,
            details=details,
        )
    if metric != "ex":
        raise ValueError(f"metric must be 'ex', 'spider_ex' or 'spider2', got {metric!r}")
    rows = _rows(dataset)
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(
            f"got {len(preds)} predictions for {len(rows)} questions; they must match one to one"
        )
    if output_dir is not None:
        check_eval_output_dir(output_dir)  # before any work: never overwrite a user's files
    golds = executor.execute_many(
        [(r["db_id"], r["gold_sql"]) for r in rows],
        timeout_s=timeout_s,
        max_rows=max_rows,
        max_workers=num_workers,
        use_cache=True,
    )
    _raise_for_broken_gold(rows, golds)
    todo = [i for i, p in enumerate(preds) if isinstance(p, str) and p.strip()]
    executed = executor.execute_many(
        [(rows[i]["db_id"], preds[i]) for i in todo],
        timeout_s=timeout_s,
        max_rows=max_rows,
        max_workers=num_workers,
    )
    pred_res: list[ExecResult | None] = [None] * len(rows)
    for i, res in zip(todo, executed, strict=True):
        pred_res[i] = res
    records = []
    for i, (row, p, g) in enumerate(zip(rows, pred_res, golds, strict=True)):
        ordered = gold_is_ordered(row["gold_sql"]) if order_sensitive == "auto" else order_sensitive
        correct = (
            p is not None
            and g.ok
            and ex_match(p, g, order_sensitive=bool(ordered), float_round=float_round)
        )
        records.append(
            {
                "idx": i,
                "question_id": row.get("question_id", i),
                "db_id": row["db_id"],
                "difficulty": _difficulty(row),
                "pred_sql": preds[i],
                "gold_sql": row["gold_sql"],
                "correct": int(correct),
                "no_answer": p is None,
                "timed_out": bool(p is not None and p.timed_out),
                "error": None if p is None or p.ok else p.error,
                "gold_error": None if g.ok else g.error,
                "truncated": bool((p is not None and p.truncated) or g.truncated),
            }
        )
    n_gold_error = sum(r["gold_error"] is not None for r in records)
    if n_gold_error:
        logger.warning("%d gold queries failed; those questions count as wrong", n_gold_error)
    metrics = _summarise(records)
    metrics["timeout_s"] = float(timeout_s)
    if output_dir is not None:
        from papercore.io import write_json, write_jsonl

        out = Path(output_dir)
        write_bird_outputs(preds, rows, out, data_mode=data_mode)
        write_jsonl(out / "results.jsonl", records)
        write_json(out / "metrics.json", metrics)
    if details:
        metrics["per_question"] = records
    return metrics


def _raise_for_broken_gold(rows: list[dict[str, Any]], golds: list[ExecResult]) -> None:
    """A gold query that could not run because of the infrastructure (missing database, crashed
    sandbox) raises: it must not be counted as a wrong answer."""
    from agentic_sql.errors import DatabaseNotFoundError, SandboxWorkerError

    for i, (row, g) in enumerate(zip(rows, golds, strict=True)):
        if g.error_kind == "not_found":
            raise DatabaseNotFoundError(
                str(row["db_id"]), "?", detail=f"question {i} (gold query): {g.error}"
            )
        if g.error_kind == "crash":
            raise SandboxWorkerError(
                f"the gold query of question {i} (db {row['db_id']!r}) could not run: {g.error}; "
                f"no EX was computed"
            )


def gold_is_ordered(sql: str, dialect: str = "sqlite") -> bool:
    """True when the outermost query of ``sql`` has ORDER BY (an approximation of Spider's rule, which
    looks for ``order by`` anywhere in the gold text: :func:`agentic_sql.spider_eval.order_matters`)."""
    import re

    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return re.search(r"\border\s+by\b", sql, re.IGNORECASE) is not None
    return tree is not None and tree.args.get("order") is not None


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    n_correct = sum(r["correct"] for r in records)
    groups: dict[str, list[int]] = {}
    for r in records:
        groups.setdefault(r["difficulty"], []).append(r["correct"])
    names = [d for d in DIFFICULTY_ORDER if d in groups] + sorted(
        d for d in groups if d not in DIFFICULTY_ORDER
    )
    return {
        "ex": n_correct / n if n else 0.0,
        "n": n,
        "n_correct": n_correct,
        "n_timeout": sum(r["timed_out"] for r in records),
        "n_error": sum(r["error"] is not None and not r["timed_out"] for r in records),
        "n_gold_error": sum(r["gold_error"] is not None for r in records),
        "n_no_answer": sum(r["no_answer"] for r in records),
        "by_difficulty": {
            d: {
                "ex": sum(groups[d]) / len(groups[d]),
                "n": len(groups[d]),
                "n_correct": sum(groups[d]),
            }
            for d in names
        },
    }


def format_bird_table(metrics: dict[str, Any]) -> str:
    """The official script's summary table (counts and accuracy in %, per difficulty and total)."""
    by = metrics["by_difficulty"]
    names = [*by, "total"]
    counts = [by[d]["n"] for d in by] + [metrics["n"]]
    accs = [100 * by[d]["ex"] for d in by] + [100 * metrics["ex"]]
    lines = [
        "{:20}".format("") + "".join(f"{n:20}" for n in names),
        "{:20}".format("count") + "".join(f"{c:<20}" for c in counts),
        "=" * 41 + "    ACCURACY    " + "=" * 41,
        "{:20}".format("accuracy") + "".join(f"{a:<20.2f}" for a in accs),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# BIRD files
# ----------------------------------------------------------------------------------------------


_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}


def _quoted_end(text: str, i: int) -> int:
    """Index just past the quoted text opening at ``text[i]`` (doubled quotes are escapes)."""
    close, j, n = _QUOTES[text[i]], i + 1, len(text)
    while j < n:
        if text[j] == close:
            if close != "]" and j + 1 < n and text[j + 1] == close:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def one_line_sql(sql: str, *, gold_file: bool = False) -> str:
    """``sql`` on one line without changing what it means.

    Whitespace runs *outside* quoted text become one space; string literals and quoted identifiers
    (``'...'``, ``"..."``, `` `...` ``, ``[...]``) are kept byte for byte, so ``'a  b'`` still
    matches the same rows. A ``-- comment`` becomes ``/* comment */`` (joining lines would
    otherwise comment out the rest of the query).

    ``gold_file=True`` (BIRD's ``<mode>_gold.sql`` is line- and tab-separated): a literal holding
    a tab, newline or carriage return is written as an equivalent SQLite concatenation
    (``('a' || char(10) || 'b')``), so the file stays parseable and the query returns the same rows.
    """
    out: list[str] = []
    i, n = 0, len(sql)

    def space() -> None:
        if out and out[-1] != " ":
            out.append(" ")

    while i < n:
        c = sql[i]
        if c in _QUOTES:
            j = _quoted_end(sql, i)
            quoted = sql[i:j]
            if gold_file and c == "'" and any(ch in quoted for ch in "\t\n\r"):
                quoted = _concat_literal(quoted)
            out.append(quoted)
            i = j
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j == -1 else j
            body = " ".join(sql[i + 2 : j].split()).replace("*/", "* /")
            space()
            if body:
                out += [f"/* {body} */", " "]
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j == -1 else j + 2
            out.append(" ".join(sql[i:j].split()))
            i = j
        elif c.isspace():
            space()
            while i < n and sql[i].isspace():
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out).strip()


def _concat_literal(quoted: str) -> str:
    """``'a<TAB>b'`` -> ``('a' || char(9) || 'b')``: the same TEXT value without a raw tab/newline."""
    body = quoted[1:-1]
    parts: list[str] = []
    buf = ""
    for ch in body:
        if ch in "\t\n\r":
            if buf:
                parts.append(f"'{buf}'")
                buf = ""
            parts.append(f"char({ord(ch)})")
        else:
            buf += ch
    if buf:
        parts.append(f"'{buf}'")
    return "(" + " || ".join(parts) + ")"


EVAL_OUTPUT_MARKER = ".agentic-sql-eval"
"""File that marks a folder as written by an agentic-sql evaluation (safe to rewrite)."""


def check_eval_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that holds anything but an earlier agentic-sql evaluation output.

    Allowed: a folder that does not exist yet, an empty folder, or one holding the
    :data:`EVAL_OUTPUT_MARKER` file. Checked before the model is loaded or anything is written.

    Raises:
        UnsafeOutputDirError: ``out_dir`` is a file, or a non-empty folder without the marker
            (its ``predict_dev.json`` / ``dev.json`` could be a user's own files).
    """
    from agentic_sql.synth import check_marked_output_dir

    return check_marked_output_dir(
        out_dir,
        marker=EVAL_OUTPUT_MARKER,
        what="evaluation outputs",
        not_ours="was not written by an agentic-sql evaluation",
    )


def prepare_eval_output_dir(out_dir: str | os.PathLike) -> Path:
    """:func:`check_eval_output_dir`, then create the folder and its marker file."""
    out = check_eval_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / EVAL_OUTPUT_MARKER
    if not marker.is_file():
        marker.write_text(
            "This folder holds agentic-sql evaluation outputs; agentic-sql may rewrite them.\n",
            encoding="utf-8",
        )
    return out


def write_bird_outputs(
    preds: Sequence[str | None],
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    data_mode: str = "dev",
    no_answer_sql: str = NO_ANSWER_SQL,
) -> dict[str, Path]:
    """Write the files of DAMO-ConvAI's BIRD ``evaluation.py`` (``--predicted_sql_path`` = ``out_dir``).

    * ``predict_<data_mode>.json``: ``{"<i>": "<SQL>\\t----- bird -----\\t<db_id>"}`` keyed by the
      position of the question in the split (the official scripts' convention); a missing answer
      is written as ``no_answer_sql`` so that it is scored wrong;
    * ``<data_mode>_gold.sql``: one ``<gold SQL>\\t<db_id>`` line per question (``--ground_truth_path``);
    * ``<data_mode>.json``: the questions with ``question_id``, ``db_id``, ``question``, ``evidence``,
      ``SQL`` and ``difficulty`` (``--diff_json_path``).

    SQL is written on one line by :func:`one_line_sql`: whitespace outside quoted text collapses,
    string literals are kept byte for byte (in the gold file, a literal holding a tab or newline is
    written as an equivalent ``||`` / ``char()`` expression, since that file is tab- and
    line-separated).

    Raises:
        UnsafeOutputDirError: ``out_dir`` is a file or a non-empty folder that is not an earlier
            agentic-sql evaluation output (:func:`check_eval_output_dir`); nothing is written.
    """
    from papercore.io import atomic_write, write_json

    rows = _rows(dataset)
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(f"got {len(preds)} predictions for {len(rows)} questions")
    out = prepare_eval_output_dir(out_dir)
    paths = {
        "predictions": out / f"predict_{data_mode}.json",
        "gold": out / f"{data_mode}_gold.sql",
        "questions": out / f"{data_mode}.json",
    }
    pred_obj = {}
    for i, (p, r) in enumerate(zip(preds, rows, strict=True)):
        sql = one_line_sql(p) if isinstance(p, str) and p.strip() else no_answer_sql
        pred_obj[str(i)] = f"{sql}{BIRD_SEPARATOR}{r['db_id']}"
    write_json(paths["predictions"], pred_obj, indent=4)
    with atomic_write(paths["gold"]) as fh:
        for r in rows:
            fh.write(f"{one_line_sql(r['gold_sql'], gold_file=True)}\t{r['db_id']}\n")
    write_json(
        paths["questions"],
        [
            {
                "question_id": r.get("question_id", i),
                "db_id": r["db_id"],
                "question": r.get("question", ""),
                "evidence": r.get("evidence", ""),
                "SQL": r["gold_sql"],
                "difficulty": _difficulty(r),
            }
            for i, r in enumerate(rows)
        ],
    )
    return paths


def _load_predictions_json(p: Path) -> Any:
    import json

    from agentic_sql.errors import MalformedDatasetError

    if not p.is_file():
        raise FileNotFoundError(f"predictions file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise MalformedDatasetError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise MalformedDatasetError(
            f"{p}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None


def _bird_entries(p: Path, obj: Any) -> list[tuple[str, str]]:
    from agentic_sql.errors import MalformedDatasetError

    if not isinstance(obj, dict):
        raise MalformedDatasetError(
            f"{p}: expected a JSON object {{index: SQL\\t----- bird -----\\tdb_id}}, "
            f"got a JSON {type(obj).__name__}"
        )
    index: dict[int, str] = {}
    for k in obj:
        try:
            i = int(k)
        except ValueError:
            raise MalformedDatasetError(
                f"{p}: key {k!r} is not an integer question index (BIRD keys are '0', '1', ...)"
            ) from None
        if i in index:
            raise MalformedDatasetError(f"{p}: keys {index[i]!r} and {k!r} name the same index {i}")
        index[i] = k
    expected = set(range(len(index)))
    if set(index) != expected:
        missing = sorted(expected - set(index))
        extra = sorted(set(index) - expected)
        detail = f"index {missing[0]} is missing" if missing else f"unexpected index {extra[0]}"
        raise MalformedDatasetError(
            f"{p}: keys must be the question indices 0..{len(index) - 1}; {detail}"
        )
    out = []
    for i in range(len(index)):
        k = index[i]
        v = obj[k]
        if not isinstance(v, str) or BIRD_SEPARATOR not in v:
            raise MalformedDatasetError(
                f"{p}: entry {k} is not of the form 'SQL{BIRD_SEPARATOR!r}db_id'"
            )
        sql, db_id = v.rsplit(BIRD_SEPARATOR, 1)
        out.append((sql, db_id))
    return out


def read_bird_predictions(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(sql, db_id), ...]`` from a BIRD ``predict_<mode>.json`` (ordered by the integer keys).

    Raises:
        FileNotFoundError / MalformedDatasetError: missing file, invalid JSON (with line and column),
            not a JSON object, a key that is not an integer (named), keys that are not exactly
            ``0..n-1`` (the first missing index named), or a value without the ``----- bird -----``
            separator (named by its key).
    """
    p = Path(path)
    return _bird_entries(p, _load_predictions_json(p))


def read_predictions(path: str | os.PathLike) -> list[str]:
    """Predicted SQL, one per question: a JSON list of strings or BIRD's ``predict_<mode>.json``.

    Raises:
        FileNotFoundError / MalformedDatasetError: as :func:`read_bird_predictions`; for a list, an
            item that is not a string (named by its position).
    """
    from agentic_sql.errors import MalformedDatasetError

    p = Path(path)
    obj = _load_predictions_json(p)
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            if not isinstance(x, str):
                raise MalformedDatasetError(
                    f"{p}: item {i} is a {type(x).__name__}, expected an SQL string"
                )
        return obj
    if not isinstance(obj, dict):
        raise MalformedDatasetError(
            f"{p}: expected a JSON list of SQL strings or BIRD's object "
            f"{{index: SQL\\t----- bird -----\\tdb_id}}, got a JSON {type(obj).__name__}"
        )
    return [sql for sql, _ in _bird_entries(p, obj)]


# ----------------------------------------------------------------------------------------------
# Agents
# ----------------------------------------------------------------------------------------------


def make_oracle_agent(gold_key: str = "gold_sql") -> Callable[[dict[str, Any]], str]:
    """An agent that answers each question with its gold SQL (EX must be 1.0: a harness check)."""

    def oracle(row: dict[str, Any]) -> str:
        return row[gold_key]

    return oracle


class TextProtocolAgent:
    """A causal LM playing the ``<sql>`` / ``<solution>`` text protocol (greedy by default).

    Runs :func:`agentic_sql.rollout.run_text_episodes` on batches of rows with a papercore
    transformers backend and an environment factory over ``executor``; the final answer is the
    environment's ``final_sql`` (``None`` when the model never wrote ``<solution>``).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        executor: SQLiteExecutor,
        *,
        max_turns: int = 5,
        greedy: bool = True,
        temperature: float = 1.0,
        max_new_tokens_per_turn: int = 256,
        max_completion_length: int | None = None,
        batch_size: int = 8,
        seed: int = 0,
        generator: Any = None,
    ):
        from agentic_sql.env import make_environment_factory
        from papercore.generation import make_backend

        self.tokenizer = tokenizer
        self.backend = generator or make_backend(
            "transformers", model=model, tokenizer=tokenizer, batch_size=batch_size
        )
        if self.tokenizer is None:
            self.tokenizer = self.backend.tokenizer
        self.env_factory = make_environment_factory(executor=executor, max_turns=max_turns)
        self.max_turns = max_turns
        self.temperature = 0.0 if greedy else temperature
        self.max_new_tokens_per_turn = max_new_tokens_per_turn
        self.max_completion_length = max_completion_length
        self.seed = seed

    def predict_batch(self, rows: Sequence[dict[str, Any]]) -> list[AgentAnswer]:
        from agentic_sql.rollout import run_text_episodes

        traces = run_text_episodes(
            self.backend,
            self.tokenizer,
            [r["prompt"] for r in rows],
            list(rows),
            self.env_factory,
            max_turns=self.max_turns,
            max_new_tokens_per_turn=self.max_new_tokens_per_turn,
            max_completion_length=self.max_completion_length,
            temperature=self.temperature,
            seed=self.seed,
        )
        return [
            AgentAnswer(
                final_sql=t.env.final_sql,
                n_turns=int(getattr(t.env, "n_turns", 0)),
                text=t.text,
            )
            for t in traces
        ]


class ToolsProtocolAgent:
    """A chat model calling ``execute_sql`` / ``submit_answer`` through its chat template: the
    ``protocol: tools`` of training, played the way TRL's ``environment_factory`` loop plays it.

    Each episode gets a fresh :class:`~agentic_sql.env.SQLEnvironment` (the class training used);
    its two tool methods are passed to ``apply_chat_template(..., tools=...)``; each generated turn
    is parsed with TRL's ``parse_response`` (the tokenizer's response template, added by
    ``add_response_schema`` as the trainer does); every tool call runs on the environment (an
    exception comes back as ``{"error": ...}``) and its result is appended as a ``tool`` message.
    An episode ends when the answer is submitted, the turns run out, or a turn has no tool call.
    Turns of all active episodes are generated in one batched call (greedy by default).

    Args:
        generator: a papercore generation backend (``transformers`` or ``vllm``; see
            :func:`make_generation_backend`).
        tokenizer: the model's tokenizer (a chat template that renders tool calls); default: the
            backend's.
        executor: the sandbox the environments run on.
        max_turns: tool calls per episode (the environment refuses more), as in training.
        max_new_tokens_per_turn: generation cap per assistant turn.
    """

    def __init__(
        self,
        generator: Any,
        executor: SQLiteExecutor,
        *,
        tokenizer: Any = None,
        max_turns: int = 5,
        greedy: bool = True,
        temperature: float = 1.0,
        max_new_tokens_per_turn: int = 512,
        seed: int = 0,
        env_factory: Any = None,
    ):
        from trl.chat_template_utils import add_response_schema, supports_tool_calling

        from agentic_sql.env import make_environment_factory

        self.backend = generator
        tok = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
        tok = getattr(tok, "tokenizer", tok)
        if (
            tok is None
            or getattr(tok, "chat_template", None) is None
            or not supports_tool_calling(tok)
        ):
            raise ValueError(
                "protocol='tools' needs a tokenizer whose chat template renders tool calls "
                "(e.g. Qwen2.5/Qwen3); evaluate a model trained with protocol: text with "
                "--protocol text"
            )
        if (
            getattr(tok, "response_template", None) is None
            and getattr(tok, "response_schema", None) is None
        ):
            try:
                tok = add_response_schema(tok)  # what GRPOTrainer does with environment_factory
            except ValueError as e:
                raise ValueError(
                    f"protocol='tools' needs a chat template whose tool calls TRL can parse "
                    f"(Qwen2.5/Qwen3, ...; or set tokenizer.response_template): {e}; evaluate a "
                    f"model trained with protocol: text with --protocol text"
                ) from None
        self.tokenizer = tok
        self.env_factory = env_factory or make_environment_factory(
            executor=executor, max_turns=max_turns
        )
        self.max_turns = int(max_turns)
        self.temperature = 0.0 if greedy else float(temperature)
        self.max_new_tokens_per_turn = int(max_new_tokens_per_turn)
        self.seed = seed

    def predict_batch(self, rows: Sequence[dict[str, Any]]) -> list[AgentAnswer]:
        from papercore.generation import SamplingConfig

        envs, msgs, texts, active = [], [], [], []
        for r in rows:
            if not isinstance(r.get("prompt"), list):
                raise ValueError(
                    "protocol='tools' needs chat prompts (a list of messages per row); build the "
                    "split with protocol='tools' (e.g. load_bird(..., protocol='tools'))"
                )
            env = self.env_factory()
            env.reset(**r)
            envs.append(env)
            msgs.append([dict(m) for m in r["prompt"]])
            texts.append("")
            active.append(True)
        for turn in range(self.max_turns + 1):  # + 1: a turn that only closes the episode
            todo = [i for i, a in enumerate(active) if a]
            if not todo:
                break
            rendered = [self._render(msgs[i], envs[i]) for i in todo]
            cfg = SamplingConfig(
                n=1,
                max_new_tokens=self.max_new_tokens_per_turn,
                temperature=self.temperature,
                seed=None if self.seed is None else self.seed + 1000 * turn,
            )
            outs = self.backend.generate(rendered, cfg)
            for i, text, out in zip(todo, rendered, outs, strict=True):
                active[i] = self._step(envs[i], msgs[i], text, out[0])
                texts[i] += out[0].text
        return [
            AgentAnswer(final_sql=e.final_sql, n_turns=int(e.n_turns), text=t)
            for e, t in zip(envs, texts, strict=True)
        ]

    def _tools(self, env: Any) -> list[Any]:
        return [env.execute_sql, env.submit_answer]

    def _render(self, messages: list[dict[str, Any]], env: Any) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=self._tools(env), add_generation_prompt=True, tokenize=False
        )

    def _step(self, env: Any, messages: list[dict[str, Any]], rendered: str, comp: Any) -> bool:
        """Parse one generated turn, run its tool calls; ``True`` while the episode goes on."""
        from trl.chat_template_utils import parse_response

        ids = list(comp.token_ids or [])
        if not ids:
            ids = self.tokenizer.encode(comp.text, add_special_tokens=False)
        prefix = self.tokenizer.encode(rendered, add_special_tokens=False)
        parsed = parse_response(self.tokenizer, ids, prefix=prefix, tools=self._tools(env))
        calls = parsed.get("tool_calls") or []
        messages.append(parsed)
        if not calls:
            return False
        tools = {"execute_sql": env.execute_sql, "submit_answer": env.submit_answer}
        for call in calls:
            fn = call.get("function", {}) if call.get("type", "function") == "function" else {}
            name = fn.get("name", call.get("name", "unknown"))
            try:
                if name not in tools:
                    raise ValueError(f"Tool {name} not found.")
                args = fn.get("arguments") or {}
                if isinstance(args, str):
                    args = json.loads(args)
                result: Any = tools[name](**args)
            except Exception as e:  # what TRL returns to the model for a failing tool call
                result = {"error": str(e)}
            messages.append({"role": "tool", "name": name, "content": str(result)})
        return not env.done


def make_generation_backend(
    backend: Literal["transformers", "vllm"],
    model: Any,
    tokenizer: Any = None,
    *,
    batch_size: int = 8,
    seed: int = 0,
    **engine_kwargs: Any,
) -> Any:
    """A papercore generation backend for evaluation.

    ``"transformers"``: ``model`` is a loaded model or a path (loaded offline first, on this
    process's device), ``batch_size`` prompts per ``generate`` call. ``"vllm"``: ``model`` is a
    path / hub id (a ``vllm.LLM`` is built with ``seed`` and ``engine_kwargs``, e.g.
    ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``) or an existing
    ``vllm.LLM``; vLLM batches by itself.
    """
    from papercore.generation import make_backend

    if backend in ("transformers", "hf"):
        if engine_kwargs:
            raise TypeError(f"engine options {sorted(engine_kwargs)} only apply to backend='vllm'")
        return make_backend("transformers", model=model, tokenizer=tokenizer, batch_size=batch_size)
    if backend == "vllm":
        if isinstance(model, (str, os.PathLike)):
            engine_kwargs.setdefault("seed", seed)
            return make_backend("vllm", model=str(model), **engine_kwargs)
        return make_backend("vllm", model=model, **engine_kwargs)
    raise ValueError(f"backend must be 'transformers' or 'vllm', got {backend!r}")


def _as_answer(out: Any) -> AgentAnswer:
    if isinstance(out, AgentAnswer):
        return out
    if out is None or isinstance(out, str):
        return AgentAnswer(final_sql=out, n_turns=1 if out else 0)
    if isinstance(out, dict):
        return AgentAnswer(
            final_sql=out.get("final_sql"),
            n_turns=int(out.get("n_turns", 0)),
            text=str(out.get("text", "")),
        )
    raise TypeError(
        f"an agent must return the final SQL (str or None), a dict with 'final_sql', or an "
        f"AgentAnswer; got {type(out).__name__}"
    )


def run_agent_eval(
    model: Any,
    tokenizer: Any = None,
    dataset: Any = None,
    *,
    max_turns: int = 5,
    greedy: bool = True,
    executor: SQLiteExecutor | None = None,
    db_root: str | os.PathLike | None = None,
    timeout_s: float = 30.0,
    num_workers: int = 2,
    isolation: str = "process",
    batch_size: int = 8,
    max_new_tokens_per_turn: int = 256,
    output_dir: str | os.PathLike | None = None,
    data_mode: str = "dev",
    seed: int = 0,
    protocol: Literal["text", "tools"] = "text",
    backend: Literal["transformers", "vllm"] | Any = "transformers",
    engine_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Greedy multi-turn agent evaluation: run the agent on every question, then BIRD EX.

    Args:
        model: a causal LM (or its path / hub id) played in ``protocol`` with ``tokenizer``, or,
            when ``tokenizer`` is ``None`` and ``model`` is not a model, an agent: a callable
            ``agent(row) -> final SQL | None`` or an object with ``predict_batch(rows) -> list``
            (items: SQL, ``None``, dict or :class:`AgentAnswer`).
        dataset: rows with ``prompt``, ``db_id``, ``gold_sql``, optional ``difficulty``; the
            prompts must be built for ``protocol`` (``load_bird(..., protocol=...)``).
        executor / db_root: the sandbox, or the folder to build one over (else the dataset's
            ``db_root`` column).
        timeout_s: per-query timeout for the agent's turns and for scoring (BIRD: 30 s).
        batch_size: questions per agent call (and prompts per ``generate`` call with transformers).
        max_new_tokens_per_turn: generation cap per turn.
        output_dir: write the BIRD files, ``results.jsonl`` and ``metrics.json`` there (a new,
            empty or earlier-evaluation folder only: :func:`check_eval_output_dir`).
        protocol: ``"text"`` (``<sql>``/``<solution>`` tags, :class:`TextProtocolAgent`) or
            ``"tools"`` (tool calls through the chat template and the training environment,
            :class:`ToolsProtocolAgent`): the protocol the model was trained with.
        backend: ``"transformers"``, ``"vllm"`` (``model`` must then be a path or hub id; vLLM
            options in ``engine_kwargs``) or a ready papercore backend object.

    Returns:
        :func:`evaluate_ex`'s metrics plus ``mean_turns``, ``predictions`` and the decoding settings.
    """
    if dataset is None:
        raise ValueError("run_agent_eval needs a dataset (rows with prompt, db_id, gold_sql)")
    if protocol not in ("text", "tools"):
        raise ValueError(f"protocol must be 'text' or 'tools', got {protocol!r}")
    if output_dir is not None:
        check_eval_output_dir(output_dir)  # before the model runs: never overwrite a user's files
    rows = _rows(dataset)
    own = executor is None
    if own:
        root = db_root
        if root is None:
            roots = {r.get("db_root") for r in rows} - {None}
            if len(roots) != 1:
                raise ValueError(
                    "pass executor= or db_root= (the dataset has no single db_root column value)"
                )
            root = roots.pop()
        executor = SQLiteExecutor(
            root,
            timeout_s=timeout_s,
            isolation=isolation,
            max_workers=num_workers,  # type: ignore[arg-type]
        )
    try:
        is_agent = hasattr(model, "predict_batch") or (
            callable(model) and not hasattr(model, "generate") and not isinstance(model, str)
        )
        if tokenizer is None and is_agent:
            agent = model
        else:
            gen = (
                backend
                if hasattr(backend, "generate")
                else make_generation_backend(
                    backend,
                    model,
                    tokenizer,
                    batch_size=batch_size,
                    seed=seed,
                    **(engine_kwargs or {}),
                )
            )
            tok = tokenizer if tokenizer is not None else getattr(gen, "tokenizer", None)
            if protocol == "tools":
                agent = ToolsProtocolAgent(
                    gen,
                    executor,
                    tokenizer=tok,
                    max_turns=max_turns,
                    greedy=greedy,
                    max_new_tokens_per_turn=max_new_tokens_per_turn,
                    seed=seed,
                )
            else:
                agent = TextProtocolAgent(
                    model,
                    tok,
                    executor,
                    max_turns=max_turns,
                    greedy=greedy,
                    max_new_tokens_per_turn=max_new_tokens_per_turn,
                    batch_size=batch_size,
                    seed=seed,
                    generator=gen,
                )
        answers: list[AgentAnswer] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            if hasattr(agent, "predict_batch"):
                outs = list(agent.predict_batch(chunk))
                if len(outs) != len(chunk):
                    raise ValueError(
                        f"the agent returned {len(outs)} answers for a batch of {len(chunk)} questions"
                    )
            else:
                outs = [agent(r) for r in chunk]
            answers += [_as_answer(o) for o in outs]
        preds = [a.final_sql for a in answers]
        metrics = evaluate_ex(
            preds,
            rows,
            executor,
            timeout_s=timeout_s,
            num_workers=num_workers,
            output_dir=output_dir,
            data_mode=data_mode,
        )
    finally:
        if own:
            executor.close()
    metrics["mean_turns"] = sum(a.n_turns for a in answers) / len(answers) if answers else 0.0
    metrics["predictions"] = preds
    metrics["decoding"] = {
        "protocol": protocol,
        "backend": backend if isinstance(backend, str) else type(backend).__name__,
        "greedy": greedy,
        "max_turns": max_turns,
        "max_new_tokens_per_turn": max_new_tokens_per_turn,
        "seed": seed,
    }
    if output_dir is not None:
        from papercore.io import write_json

        write_json(
            Path(output_dir) / "metrics.json",
            {k: v for k, v in metrics.items() if k != "predictions"},
        )
    return metrics
