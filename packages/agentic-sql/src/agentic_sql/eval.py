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
    "TextProtocolAgent",
    "evaluate_ex",
    "format_bird_table",
    "gold_is_ordered",
    "make_oracle_agent",
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
) -> dict[str, Any]:
    """BIRD execution accuracy of ``preds`` (one SQL per dataset row, ``None`` = no answer).

    Args:
        dataset: rows with ``db_id``, ``gold_sql`` (or BIRD's ``SQL``), optional ``difficulty``.
        executor: the sandbox; gold results go through its cache.
        timeout_s: per-query timeout (BIRD's ``meta_time_out`` = 30 s).
        num_workers: queries executed in parallel.
        max_rows: row cap (``None`` = every row, as the official script's ``fetchall``); with a cap,
            a truncated prediction or gold result is not comparable and counts as wrong.
        order_sensitive: compare rows in order; ``"auto"`` = only when the gold query's outermost
            SELECT has ORDER BY (Spider's rule). BIRD ignores order (``False``).
        output_dir: also write the BIRD files (:func:`write_bird_outputs`), ``results.jsonl``
            (one line per question) and ``metrics.json``.
        details: include the per-question records under ``"per_question"``.

    Returns:
        ``{"ex", "n", "n_correct", "n_timeout", "n_error", "n_gold_error", "n_no_answer",
        "by_difficulty": {name: {"ex", "n", "n_correct"}}, "timeout_s"}``; a gold query that fails
        counts as wrong (as in the official script) and is counted in ``n_gold_error``.
    """
    rows = _rows(dataset)
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(
            f"got {len(preds)} predictions for {len(rows)} questions; they must match one to one"
        )
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
    """True when the outermost query of ``sql`` has ORDER BY (Spider compares such results in order)."""
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


def _one_line(sql: str) -> str:
    return " ".join(sql.replace("\t", " ").split())


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

    SQL is written on one line (tabs and newlines collapsed to spaces) because the gold file is
    line- and tab-separated.
    """
    from papercore.io import atomic_write, write_json

    rows = _rows(dataset)
    preds = list(preds)
    if len(preds) != len(rows):
        raise ValueError(f"got {len(preds)} predictions for {len(rows)} questions")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out / f"predict_{data_mode}.json",
        "gold": out / f"{data_mode}_gold.sql",
        "questions": out / f"{data_mode}.json",
    }
    pred_obj = {}
    for i, (p, r) in enumerate(zip(preds, rows, strict=True)):
        sql = _one_line(p) if isinstance(p, str) and p.strip() else no_answer_sql
        pred_obj[str(i)] = f"{sql}{BIRD_SEPARATOR}{r['db_id']}"
    write_json(paths["predictions"], pred_obj, indent=4)
    with atomic_write(paths["gold"]) as fh:
        for r in rows:
            fh.write(f"{_one_line(r['gold_sql'])}\t{r['db_id']}\n")
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
    ):
        from agentic_sql.env import make_environment_factory
        from papercore.generation import make_backend

        self.tokenizer = tokenizer
        self.backend = make_backend(
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
) -> dict[str, Any]:
    """Greedy multi-turn agent evaluation: run the agent on every question, then BIRD EX.

    Args:
        model: a causal LM (or its path) used with ``tokenizer`` in the text protocol, or, when
            ``tokenizer`` is ``None``, an agent: a callable ``agent(row) -> final SQL | None`` or an
            object with ``predict_batch(rows) -> list`` (items: SQL, ``None``, dict or
            :class:`AgentAnswer`). Rows are the dataset rows (``prompt``, ``question``, ``db_id`` ...).
        dataset: rows with ``prompt``, ``db_id``, ``gold_sql``, optional ``difficulty``.
        executor / db_root: the sandbox, or the folder to build one over (else the dataset's
            ``db_root`` column).
        timeout_s: per-query timeout for the agent's turns and for scoring (BIRD: 30 s).
        output_dir: write the BIRD files, ``results.jsonl`` and ``metrics.json`` there.

    Returns:
        :func:`evaluate_ex`'s metrics plus ``mean_turns``, ``predictions`` and the decoding settings.
    """
    if dataset is None:
        raise ValueError("run_agent_eval needs a dataset (rows with prompt, db_id, gold_sql)")
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
            agent = TextProtocolAgent(
                model,
                tokenizer,
                executor,
                max_turns=max_turns,
                greedy=greedy,
                max_new_tokens_per_turn=max_new_tokens_per_turn,
                batch_size=batch_size,
                seed=seed,
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
