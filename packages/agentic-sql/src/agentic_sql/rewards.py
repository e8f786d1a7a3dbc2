"""Rewards as plain TRL reward functions: ``f(prompts, completions, **kwargs) -> list[float | None]``.

Four rewards over the same episodes, so comparing them is one loop (spec §2.2-2.4, §5):

* :func:`binary_ex_reward` — 1 iff the final answer's result matches gold (BIRD EX), else 0 (SkyRL-style).
* :func:`arctic_reward` — 1 EX-correct / 0.1 executable but wrong / 0 error or no answer (Arctic-Text2SQL-R1).
* :func:`csmr_final_reward` — CSMR of the final answer only (dense, final-turn-only ablation of ATR).
* :func:`atr_reward` — ``R(tau) = w_ex * EX_final + w_atr * ATR(per-turn CSMR) - fmt_penalty * [bad format]``.

Where the per-turn scores come from, in order:

1. ``environments=[SQLEnvironment, ...]`` (TRL ``environment_factory`` path): read from each environment.
2. ``turn_scores`` / ``turn_errors`` / ``final_ex`` ... extra columns (TRL ``rollout_func`` path,
   see :func:`agentic_sql.rollout.make_sql_rollout_func`).
3. Otherwise the completion is parsed (``<sql>``/``<solution>`` tags, or tool calls) and its queries
   are executed with ``executor=`` (or an executor built from a ``db_root`` column). The final-only
   rewards execute only the final answer.

A gold query that fails or times out makes the example invalid: its reward is ``None`` (TRL turns
it into NaN and ignores it), a warning is logged and the batch's count goes to TRL's
``log_metric`` as ``sql/unscorable`` — never a silent 0. Gold queries fetch every row and get
``GOLD_TIMEOUT_FACTOR`` (4x) the policy's timeout (:class:`GoldCache`); a failure is cached, so a
slow gold costs its timeout once, not at every reset. :func:`prerun_gold` runs every distinct gold
query of a dataset once, in parallel on the executor's pool, before training, and raises, drops or
flags the rows whose gold cannot run (``on_failure=``), with the count logged and the failures
listed. A missing database raises :class:`~agentic_sql.errors.DatabaseNotFoundError`; a crashed
sandbox raises :class:`~agentic_sql.errors.SandboxWorkerError`.

Completions are parsed by :mod:`agentic_sql.protocol` (the same parser the text rollout uses).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentic_sql.atr import ATRConfig, trajectory_reward
from agentic_sql.protocol import ParsedCompletion, parse_completion

logger = logging.getLogger(__name__)

__all__ = [
    "ARCTIC_EXEC_OK",
    "GOLD_TIMEOUT_FACTOR",
    "REWARD_KINDS",
    "Episode",
    "GoldCache",
    "GoldFailure",
    "GoldFailurePolicy",
    "GoldPrerun",
    "ParsedCompletion",
    "TurnScore",
    "arctic_reward",
    "atr_reward",
    "binary_ex_reward",
    "close_shared_executors",
    "csmr_final_reward",
    "episode_reward",
    "make_reward_funcs",
    "parse_completion",
    "prerun_gold",
    "score_query",
    "shared_executor",
]

RewardKind = Literal["binary", "arctic", "csmr", "atr", "atr+csmr"]
REWARD_KINDS: tuple[str, ...] = ("binary", "arctic", "csmr", "atr", "atr+csmr")
#: Arctic-Text2SQL-R1's reward for an answer that executes but is wrong
ARCTIC_EXEC_OK = 0.1

# ----------------------------------------------------------------------------------------------
# Scoring one query against gold
# ----------------------------------------------------------------------------------------------


#: gold queries run with this many times the executor's (policy) timeout (``GoldCache(timeout_s=)``
#: overrides it): a slow but correct gold query must not make an example unscorable
GOLD_TIMEOUT_FACTOR = 4.0

GoldFailurePolicy = Literal["raise", "drop", "flag"]


@dataclass(frozen=True)
class GoldFailure:
    """A gold query that cannot be scored against (``error_kind`` ``"timeout"``, ``"sqlite"``,
    ``"unsafe"`` or ``"memory"``), with the dataset rows that use it (when known)."""

    db_id: str
    gold_sql: str
    error: str
    error_kind: str | None
    timed_out: bool = False
    rows: tuple[int, ...] = ()


class GoldCache:
    """Gold results per ``(db_id, gold_sql)``; ``get`` returns ``None`` for an unscorable example.

    Gold queries run with every row (``max_rows=None``, as :func:`agentic_sql.eval.evaluate_ex`
    does) and a longer timeout than the policy's: ``timeout_s`` (default
    ``GOLD_TIMEOUT_FACTOR * executor.timeout_s``). A *failure* of the gold query (SQL error,
    refused query, timeout, out of memory) is cached too, so a gold query that times out costs its
    timeout once and not at every ``reset`` (``retry_timeouts=True`` runs timeouts and
    out-of-memory failures again on the next ``get``, the old behaviour). Results are kept in an
    LRU of ``maxsize`` entries; those of :meth:`prerun` are pinned (never evicted: the training
    set's gold results stay in memory).

    Raises (from :meth:`get` and :meth:`prerun`):
        DatabaseNotFoundError: the example's database does not exist (fail fast, spec §6).
        SandboxWorkerError: the sandbox itself failed (worker crash): never a ``None`` reward.
    """

    def __init__(
        self,
        executor: Any,
        maxsize: int = 4096,
        *,
        timeout_s: float | None = None,
        retry_timeouts: bool = False,
    ):
        self.executor = executor
        self.maxsize = maxsize
        if timeout_s is None and getattr(executor, "timeout_s", None) is not None:
            timeout_s = GOLD_TIMEOUT_FACTOR * float(executor.timeout_s)
        self.timeout_s = timeout_s
        self.retry_timeouts = bool(retry_timeouts)
        self.n_invalid = 0  # failed gold executions (a cached failure counts once)
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._pinned: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _lookup(self, key: tuple[str, str]) -> Any:
        with self._lock:
            if key in self._pinned:
                return self._pinned[key]
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def get(self, db_id: str, gold_sql: str) -> Any:
        """The gold :class:`~agentic_sql.executor.ExecResult`, or ``None`` when the gold query fails."""
        key = (str(db_id), str(gold_sql))
        hit = self._lookup(key)
        if hit is not None:
            return hit if hit.ok else None
        if hasattr(self.executor, "db_path"):
            self.executor.db_path(db_id)  # raises DatabaseNotFoundError for an unknown database
        res = _execute(self.executor, db_id, gold_sql, timeout_s=self.timeout_s, max_rows=None)
        self._store(key, res, pin=False)
        return res if res.ok else None

    def prerun(self, pairs: Sequence[tuple[str, str]], *, pin: bool = True) -> list[GoldFailure]:
        """Run every distinct, not yet cached ``(db_id, gold_sql)`` once, in parallel, and cache the results.

        Uses the executor's ``execute_many`` (its worker-process pool) when it has one. With
        ``pin=True`` the results are never evicted (a training set's gold results); ``pin=False``
        just warms the LRU (a batch's). Returns the failures among ``pairs`` (cached ones
        included), in first-seen order.

        Raises:
            DatabaseNotFoundError / SandboxWorkerError: as :meth:`get` (infrastructure, not a score).
        """
        distinct = list(dict.fromkeys((str(d), str(q)) for d, q in pairs))
        todo = [k for k in distinct if self._lookup(k) is None]
        if hasattr(self.executor, "db_path"):
            for db_id in dict.fromkeys(d for d, _ in todo):
                self.executor.db_path(db_id)
        if todo:
            if hasattr(self.executor, "execute_many"):
                kw: dict[str, Any] = {"timeout_s": self.timeout_s, "max_rows": None}
                if _accepts(self.executor.execute_many, "chunk_size"):
                    kw["chunk_size"] = 1  # slow gold queries must not queue on one worker
                results = self.executor.execute_many(todo, **kw)
            else:
                results = [
                    _execute(self.executor, d, q, timeout_s=self.timeout_s, max_rows=None)
                    for d, q in todo
                ]
            for key, res in zip(todo, results, strict=True):
                self._store(key, res, pin=pin)
        if pin:
            with self._lock:
                for k in distinct:  # already cached ones are pinned too: "keep these"
                    if k not in self._pinned and k in self._cache:
                        self._pinned[k] = self._cache.pop(k)
        out = []
        for k in distinct:
            res = self._lookup(k)
            if res is not None and not res.ok:
                out.append(_gold_failure(k, res))
        return out

    def failures(self) -> list[GoldFailure]:
        """Every cached gold failure (pinned first), without row indices."""
        with self._lock:
            items = list(self._pinned.items()) + list(self._cache.items())
        return [_gold_failure(k, r) for k, r in items if not r.ok]

    def _store(self, key: tuple[str, str], res: Any, *, pin: bool) -> None:
        db_id, gold_sql = key
        if not res.ok and res.error_kind == "not_found":
            from agentic_sql.errors import DatabaseNotFoundError

            raise DatabaseNotFoundError(db_id, "?", detail=f"gold query: {res.error}")
        if not res.ok and res.error_kind == "crash":
            from agentic_sql.errors import SandboxWorkerError

            raise SandboxWorkerError(
                f"the gold query of db {db_id!r} could not run because the sandbox failed "
                f"({res.error}); refusing to turn it into a None reward: {gold_sql}"
            )
        cacheable = res.ok or not (
            self.retry_timeouts and (res.timed_out or res.error_kind == "memory")
        )
        if not res.ok:
            self.n_invalid += 1
            logger.warning(
                "gold SQL of db %r failed (%s); the example gets reward None%s: %s",
                db_id,
                "timeout" if res.timed_out else res.error,
                "" if cacheable else " (not cached: retried next time)",
                gold_sql,
            )
        if not cacheable:
            return
        with self._lock:
            if pin:
                self._pinned[key] = res
                self._cache.pop(key, None)
                return
            self._cache[key] = res
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)


def _gold_failure(key: tuple[str, str], res: Any, rows: Sequence[int] = ()) -> GoldFailure:
    return GoldFailure(
        db_id=key[0],
        gold_sql=key[1],
        error=str(res.error or "failed"),
        error_kind=res.error_kind,
        timed_out=bool(res.timed_out),
        rows=tuple(rows),
    )


@dataclass
class GoldPrerun:
    """What :func:`prerun_gold` found.

    Attributes:
        dataset: the dataset to train on (failing rows removed when ``on_failure="drop"``).
        n_rows: rows checked; n_distinct: distinct ``(db_id, gold_sql)`` pairs among them.
        failures: one :class:`GoldFailure` per failing gold query, with the row indices using it.
        dropped_rows: indices (in the input dataset) of the rows removed (``"drop"``) or flagged.
        elapsed_s: wall time of the pre-run.
    """

    dataset: Any
    n_rows: int
    n_distinct: int
    failures: list[GoldFailure]
    dropped_rows: list[int]
    elapsed_s: float
    on_failure: str = "raise"

    @property
    def n_failed_rows(self) -> int:
        return len(self.dropped_rows)


def _dataset_rows(dataset: Any) -> list[dict[str, Any]]:
    if hasattr(dataset, "column_names") and hasattr(dataset, "select_columns"):
        cols = [c for c in ("db_id", "gold_sql") if c in dataset.column_names]
        return list(dataset.select_columns(cols)) if cols else [{} for _ in range(len(dataset))]
    return [dict(r) for r in dataset]


def prerun_gold(
    dataset: Any, gold_cache: GoldCache, *, on_failure: GoldFailurePolicy = "raise"
) -> GoldPrerun:
    """Run every distinct gold query of ``dataset`` once, in parallel, before training or scoring.

    The results are pinned in ``gold_cache`` (so ``reset`` and the rewards never execute a gold
    query again), and every failure is cached, counted and logged once. ``on_failure`` says what a
    row whose gold query cannot run becomes — never a wrong score:

    * ``"raise"`` (default): :class:`~agentic_sql.errors.GoldQueryError` listing the failures;
    * ``"drop"``: the rows are removed from the returned ``dataset`` (count logged);
    * ``"flag"``: the rows stay; their reward is ``None`` (ignored by TRL, counted in
      ``sql/unscorable``).

    Args:
        dataset: a ``datasets.Dataset`` or a list of dicts with ``db_id`` and ``gold_sql``.

    Raises:
        GoldQueryError: ``on_failure="raise"`` and at least one gold query fails.
        ValueError: unknown ``on_failure``, or rows without ``db_id`` / ``gold_sql``.
        DatabaseNotFoundError / SandboxWorkerError: infrastructure failures (always raised).
    """
    import time

    if on_failure not in ("raise", "drop", "flag"):
        raise ValueError(f"on_failure must be 'raise', 'drop' or 'flag', got {on_failure!r}")
    rows = _dataset_rows(dataset)
    missing = [i for i, r in enumerate(rows) if r.get("db_id") is None or r.get("gold_sql") is None]
    if missing:
        raise ValueError(
            f"{len(missing)} dataset rows lack db_id or gold_sql (first: row {missing[0]}); "
            f"every row needs both to be scored"
        )
    keys = [(str(r["db_id"]), str(r["gold_sql"])) for r in rows]
    t0 = time.monotonic()
    failed = {(f.db_id, f.gold_sql): f for f in gold_cache.prerun(keys)}
    elapsed = time.monotonic() - t0
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, k in enumerate(keys):
        if k in failed:
            by_key.setdefault(k, []).append(i)
    failures = [
        GoldFailure(f.db_id, f.gold_sql, f.error, f.error_kind, f.timed_out, tuple(by_key[k]))
        for k, f in failed.items()
    ]
    bad_rows = sorted(i for f in failures for i in f.rows)
    n_distinct = len(set(keys))
    logger.info(
        "pre-ran %d distinct gold queries for %d rows in %.1f s: %d failed (%d rows)",
        n_distinct,
        len(rows),
        elapsed,
        len(failures),
        len(bad_rows),
    )
    if failures and on_failure == "raise":
        from agentic_sql.errors import GoldQueryError

        raise GoldQueryError(failures)
    out = dataset
    if failures:
        logger.warning(
            "%d of %d rows have a gold query that cannot run (%d distinct queries; first: db %r, "
            "%s); %s",
            len(bad_rows),
            len(rows),
            len(failures),
            failures[0].db_id,
            failures[0].error,
            "dropped from the dataset" if on_failure == "drop" else "flagged: their reward is None",
        )
        if on_failure == "drop":
            bad = set(bad_rows)
            keep = [i for i in range(len(rows)) if i not in bad]
            out = dataset.select(keep) if hasattr(dataset, "select") else [dataset[i] for i in keep]
    return GoldPrerun(
        dataset=out,
        n_rows=len(rows),
        n_distinct=n_distinct,
        failures=failures,
        dropped_rows=bad_rows,
        elapsed_s=elapsed,
        on_failure=on_failure,
    )


_OVERRIDES_OK: dict[type, bool] = {}


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def _execute(executor: Any, db_id: str, sql: str, **overrides: Any) -> Any:
    """``executor.execute`` with per-call overrides (``timeout_s``, ``max_rows``) when it takes them.

    :class:`~agentic_sql.executor.SQLiteExecutor` does; a duck-typed executor with
    ``execute(db_id, sql)`` gets the plain call.
    """
    cls = type(executor)
    ok = _OVERRIDES_OK.get(cls)
    if ok is None:
        import inspect

        try:
            params = inspect.signature(executor.execute).parameters.values()
        except (TypeError, ValueError):
            params = []
        names = {p.name for p in params}
        ok = any(p.kind is p.VAR_KEYWORD for p in params) or {"timeout_s", "max_rows"} <= names
        _OVERRIDES_OK[cls] = ok
    return executor.execute(db_id, sql, **overrides) if ok else executor.execute(db_id, sql)


@dataclass(frozen=True)
class TurnScore:
    """One executed turn: CSMR score, whether it errored, EX match, and the execution result."""

    score: float
    error: bool
    ex: bool
    result: Any = None


def score_query(
    executor: Any,
    db_id: str,
    sql: str | None,
    gold: Any,
    *,
    csmr_mode: str = "exact",
    cap_partial: float = 0.9,
    result: Any = None,
) -> TurnScore:
    """Execute ``sql`` and score it against the gold result with CSMR (error / no SQL -> 0).

    ``result`` is ``sql``'s result when the caller already executed it (e.g. a whole batch through
    ``executor.execute_many``); it is then not executed again.

    A result cut at the executor's ``max_rows`` (``truncated``) is executed again with every row,
    as :func:`agentic_sql.eval.evaluate_ex` executes predictions, and scored on that; if the
    uncapped run fails (timeout, memory), the turn scores as an error. ``result`` stays the capped
    result (what the agent is shown).
    """
    from agentic_sql.compare import column_set_score, ex_match

    if not sql or not sql.strip():
        return TurnScore(0.0, True, False, None)
    res = result if result is not None else executor.execute(db_id, sql)
    if not res.ok or gold is None:
        return TurnScore(0.0, not res.ok, False, res)
    full = res
    if res.truncated:
        full = _execute(executor, db_id, sql, max_rows=None)
        if not full.ok or full.truncated:
            return TurnScore(0.0, True, False, res)
    ex = bool(ex_match(full, gold))
    score = (
        1.0 if ex else float(column_set_score(full, gold, mode=csmr_mode, cap_partial=cap_partial))
    )
    return TurnScore(score, False, ex, res)


# ----------------------------------------------------------------------------------------------
# Episodes and the four rewards
# ----------------------------------------------------------------------------------------------


@dataclass
class Episode:
    """What a reward needs to know about one rollout."""

    turn_scores: list[float] = field(default_factory=list)
    turn_errors: list[bool] = field(default_factory=list)
    final_sql: str | None = None
    final_ok: bool = False  # the final answer executed without error
    final_ex: bool = False
    final_score: float = 0.0  # CSMR of the final answer
    format_ok: bool = False
    gold_valid: bool = True


def episode_reward(kind: str, ep: Episode, cfg: ATRConfig | None = None) -> float | None:
    """The reward of one episode under ``kind`` (``None`` when the gold query is invalid).

    Every kind requires a well-formed episode (``ep.format_ok``): binary EX, Arctic and final-only
    CSMR give 0.0 on a format failure, ATR subtracts ``fmt_penalty``.
    """
    if not ep.gold_valid:
        return None
    kind = _check_kind(kind)
    if kind == "binary":
        return 1.0 if ep.format_ok and ep.final_ex else 0.0
    if kind == "arctic":
        if not ep.format_ok:
            return 0.0
        return 1.0 if ep.final_ex else (ARCTIC_EXEC_OK if ep.final_ok else 0.0)
    if kind == "csmr":
        return float(ep.final_score) if ep.format_ok else 0.0
    return trajectory_reward(
        ep.turn_scores,
        ep.turn_errors,
        final_ex=ep.final_ex,
        format_ok=ep.format_ok,
        cfg=cfg or ATRConfig(),
    )


def _check_kind(kind: str) -> str:
    k = str(kind).lower().strip()
    if k not in REWARD_KINDS:
        raise ValueError(f"unknown reward kind {kind!r}; expected one of {list(REWARD_KINDS)}")
    return "atr" if k == "atr+csmr" else k


# ----------------------------------------------------------------------------------------------
# Executors built from a db_root column (module-level reward functions)
# ----------------------------------------------------------------------------------------------

_SHARED: dict[str, tuple[Any, GoldCache]] = {}
_SHARED_LOCK = threading.Lock()


def shared_executor(db_root: str | os.PathLike) -> tuple[Any, GoldCache]:
    """``(executor, gold cache)`` for ``db_root``, built once per folder and reused.

    What the module-level rewards use for a dataset's ``db_root`` column. The executors run the
    policy's SQL in worker processes (``isolation="process"``, the only mode with a hard timeout;
    workers start with ``python -m agentic_sql.sandbox_worker``, so a script without an
    ``if __name__ == "__main__":`` guard works). They are closed at interpreter exit or by
    :func:`close_shared_executors`.

    Raises:
        DatabaseNotFoundError: ``db_root`` is not an existing folder.
    """
    from agentic_sql.executor import SQLiteExecutor

    key = str(Path(db_root).resolve())
    with _SHARED_LOCK:
        hit = _SHARED.get(key)
        if hit is None:
            ex = SQLiteExecutor(key, isolation="process")
            hit = _SHARED[key] = (ex, GoldCache(ex))
        return hit


def close_shared_executors() -> None:
    """Close every executor :func:`shared_executor` built (registered with ``atexit``)."""
    with _SHARED_LOCK:
        items = list(_SHARED.values())
        _SHARED.clear()
    for ex, _ in items:
        ex.close()


atexit.register(close_shared_executors)


class _Scorer:
    """Builds :class:`Episode` objects for a batch from environments, rollout extras or by executing."""

    def __init__(
        self,
        executor: Any = None,
        csmr_mode: str = "exact",
        cap_partial: float = 0.9,
        gold: GoldCache | None = None,
    ):
        if executor is None and gold is not None:
            executor = gold.executor
        self.executor = executor  # bound by make_reward_funcs; None for the module-level rewards
        self.gold = (
            gold if gold is not None else (GoldCache(executor) if executor is not None else None)
        )
        self.csmr_mode = csmr_mode
        self.cap_partial = cap_partial
        self._lock = threading.Lock()

    def episodes(
        self,
        completions: Sequence[Any],
        db_id: Sequence[str] | None,
        gold_sql: Sequence[str] | None,
        kw: dict[str, Any],
        *,
        need_turns: bool,
    ) -> list[Episode]:
        n = len(completions)
        envs = kw.get("environments")
        if envs is not None and len(envs) == n and all(hasattr(e, "turn_scores") for e in envs):
            return [_episode_from_env(e) for e in envs]
        if kw.get("turn_scores") is not None:
            return _episodes_from_extras(kw, n)
        return self._execute(completions, db_id, gold_sql, kw, need_turns)

    def _execute(self, completions, db_id, gold_sql, kw, need_turns) -> list[Episode]:
        if db_id is None or gold_sql is None:
            missing = [k for k, v in (("db_id", db_id), ("gold_sql", gold_sql)) if v is None]
            raise ValueError(
                f"the dataset lacks the column(s) {missing} that the SQL rewards need "
                f"(expected columns: prompt, db_id, gold_sql)"
            )
        resources = self._resources(kw, len(completions))
        parsed_all = [parse_completion(c) for c in completions]
        # gold queries of the batch: each distinct one once, in parallel (cached afterwards)
        groups: dict[int, tuple[GoldCache, list[tuple[str, str]]]] = {}
        for db, gsql, (_, gc) in zip(db_id, gold_sql, resources, strict=True):
            groups.setdefault(id(gc), (gc, []))[1].append((db, gsql))
        for gc, pairs in groups.values():
            gc.prerun(pairs, pin=False)
        golds = [gc.get(db, g) for db, g, (_, gc) in zip(db_id, gold_sql, resources, strict=True)]
        # the policy's queries of the whole batch in one execute_many per executor
        todo: dict[int, tuple[Any, list[tuple[str, str]]]] = {}
        for p, db, (ex, _), g in zip(parsed_all, db_id, resources, golds, strict=True):
            if g is None:
                continue
            qs = (list(p.sql_turns) if need_turns else []) + (
                [p.final_sql] if p.final_sql is not None else []
            )
            todo.setdefault(id(ex), (ex, []))[1].extend((db, q) for q in qs if q and q.strip())
        done: dict[tuple[int, str, str], Any] = {}
        for ex, items in todo.values():
            items = list(dict.fromkeys(items))
            if hasattr(ex, "execute_many"):
                for item, r in zip(items, ex.execute_many(items), strict=True):
                    done[(id(ex), *item)] = r
        out = []
        for parsed, db, (executor, _), gold in zip(
            parsed_all, db_id, resources, golds, strict=True
        ):
            ep = Episode(final_sql=parsed.final_sql, format_ok=parsed.format_ok)
            if gold is None:
                ep.gold_valid = False
                out.append(ep)
                continue
            queries = list(parsed.sql_turns) if need_turns else []
            for q in queries:
                ts = self._score(executor, db, q, gold, done.get((id(executor), db, q)))
                ep.turn_scores.append(ts.score)
                ep.turn_errors.append(ts.error)
            if parsed.final_sql is not None:
                ts = self._score(
                    executor,
                    db,
                    parsed.final_sql,
                    gold,
                    done.get((id(executor), db, parsed.final_sql)),
                )
                ep.final_ok, ep.final_ex, ep.final_score = not ts.error, ts.ex, ts.score
                if need_turns:
                    ep.turn_scores.append(ts.score)
                    ep.turn_errors.append(ts.error)
            out.append(ep)
        return out

    def _score(self, executor, db, sql, gold, result=None) -> TurnScore:
        return score_query(
            executor,
            db,
            sql,
            gold,
            csmr_mode=self.csmr_mode,
            cap_partial=self.cap_partial,
            result=result,
        )

    def _resources(self, kw: dict[str, Any], n: int) -> list[tuple[Any, GoldCache]]:
        """``(executor, gold cache)`` per row: ``executor=``, the bound executor, the environments'
        executor, or a shared executor per ``db_root`` value (each row its own folder)."""
        ex = kw.get("executor")
        if ex is None:
            ex = self.executor
        if ex is None and kw.get("environments"):
            env = kw["environments"][0]
            ex = env.executor
            if getattr(env, "gold_cache", None) is not None and env.gold_cache.executor is ex:
                return [(ex, env.gold_cache)] * n
        if ex is not None:
            with self._lock:
                if self.gold is None or self.gold.executor is not ex:
                    self.gold = GoldCache(ex)
                return [(ex, self.gold)] * n
        root = kw.get("db_root")
        if root is not None:
            roots = list(root) if isinstance(root, (list, tuple)) else [root] * n
            if len(roots) != n:
                raise ValueError(f"got {len(roots)} db_root values for {n} completions")
            return [shared_executor(r) for r in roots]
        raise ValueError(
            "no executor to run the SQL: pass executor=SQLiteExecutor(db_root), add a db_root column to the "
            "dataset, or build the reward with make_reward_funcs(kind, executor)"
        )


def _episode_from_env(env: Any) -> Episode:
    if hasattr(env, "_episode"):
        return env._episode()
    return Episode(
        turn_scores=list(env.turn_scores),
        turn_errors=list(env.turn_errors),
        final_sql=env.final_sql,
        final_ok=bool(getattr(env, "final_ok", False)),
        final_ex=bool(env.final_ex),
        final_score=float(getattr(env, "final_score", 0.0)),
        format_ok=env.final_sql is not None,
        gold_valid=bool(getattr(env, "gold_valid", True)),
    )


def _episodes_from_extras(kw: dict[str, Any], n: int) -> list[Episode]:
    def col(name, default):
        v = kw.get(name)
        if v is None:
            return [default] * n
        if not isinstance(v, (list, tuple)) or len(v) != n:
            return [v] * n
        return list(v)

    scores, errors = col("turn_scores", []), col("turn_errors", None)
    finals, ex, ok = col("final_sql", None), col("final_ex", False), col("final_ok", False)
    fmt, valid = col("format_ok", None), col("gold_valid", True)
    fscore = col("final_score", None)
    out = []
    for i in range(n):
        s = [float(x) for x in scores[i]]
        e = [bool(x) for x in errors[i]] if errors[i] is not None else [False] * len(s)
        has_final = finals[i] is not None
        out.append(
            Episode(
                turn_scores=s,
                turn_errors=e,
                final_sql=finals[i],
                final_ok=bool(ok[i]),
                final_ex=bool(ex[i]),
                final_score=(
                    float(fscore[i])
                    if fscore[i] is not None
                    else (s[-1] if has_final and s else 0.0)
                ),
                format_ok=bool(fmt[i]) if fmt[i] is not None else has_final,
                gold_valid=bool(valid[i]),
            )
        )
    return out


def _log_metrics(episodes: list[Episode], kw: dict[str, Any], *, turn_stats: bool) -> None:
    """Batch statistics through TRL's ``log_metric`` (no-op outside TRL).

    Always ``sql/unscorable`` (episodes whose gold query failed: reward ``None``); with
    ``turn_stats`` also the per-turn CSMR statistics.
    """
    log_metric = kw.get("log_metric")
    if log_metric is None or not episodes:
        return
    log_metric("sql/unscorable", float(sum(not ep.gold_valid for ep in episodes)))
    if not turn_stats:
        return
    turns = [s for ep in episodes for s in ep.turn_scores]
    n_reg = sum(
        any(b < a for a, b in zip(ep.turn_scores, ep.turn_scores[1:], strict=False))
        for ep in episodes
    )
    log_metric("sql/turn_csmr_mean", sum(turns) / len(turns) if turns else 0.0)
    log_metric("sql/turns_mean", sum(len(ep.turn_scores) for ep in episodes) / len(episodes))
    log_metric("sql/regression_frac", n_reg / len(episodes))
    log_metric("sql/final_ex", sum(ep.final_ex for ep in episodes) / len(episodes))
    log_metric("sql/format_ok", sum(ep.format_ok for ep in episodes) / len(episodes))


_DEFAULT_SCORER = _Scorer()


def _reward(
    kind: str,
    scorer: _Scorer,
    cfg: ATRConfig | None,
    completions: Sequence[Any],
    db_id: Sequence[str] | None,
    gold_sql: Sequence[str] | None,
    kw: dict[str, Any],
) -> list[float | None]:
    kind = _check_kind(kind)
    eps = scorer.episodes(completions, db_id, gold_sql, kw, need_turns=kind == "atr")
    turn_stats = (
        kind == "atr" or kw.get("environments") is not None or kw.get("turn_scores") is not None
    )
    _log_metrics(eps, kw, turn_stats=turn_stats)
    return [episode_reward(kind, ep, cfg) for ep in eps]


def binary_ex_reward(completions, db_id=None, gold_sql=None, **kw) -> list[float | None]:
    """1.0 iff the answer is well formed and its result set equals gold (BIRD EX), else 0.0.

    A TRL reward function. Pass ``executor=`` (or a ``db_root`` column: one shared thread-mode
    executor per folder, see :func:`shared_executor`) unless the rollouts come from
    :class:`~agentic_sql.env.SQLEnvironment` or :func:`~agentic_sql.rollout.make_sql_rollout_func`.
    """
    return _reward("binary", _DEFAULT_SCORER, None, completions, db_id, gold_sql, kw)


def arctic_reward(completions, db_id=None, gold_sql=None, **kw) -> list[float | None]:
    """Arctic-Text2SQL-R1: 1.0 EX-correct, 0.1 executable but wrong, 0.0 error / no answer / bad format."""
    return _reward("arctic", _DEFAULT_SCORER, None, completions, db_id, gold_sql, kw)


def csmr_final_reward(completions, db_id=None, gold_sql=None, **kw) -> list[float | None]:
    """CSMR (column-set matching, spec §2.2) of the final answer only; 0.0 on format failure."""
    return _reward("csmr", _DEFAULT_SCORER, None, completions, db_id, gold_sql, kw)


def atr_reward(
    completions, db_id=None, gold_sql=None, turn_scores=None, environments=None, **kw
) -> list[float | None]:
    """``R(tau) = w_ex * EX_final + w_atr * ATR - fmt_penalty * [format invalid]`` over per-turn CSMR.

    Per-turn scores come from ``environments`` or ``turn_scores`` (never re-executed); without
    them, every ``<sql>`` turn of the completion is executed. ``cfg=ATRConfig(...)`` overrides the
    constants.
    """
    kw.update(turn_scores=turn_scores, environments=environments)
    return _reward("atr", _DEFAULT_SCORER, kw.pop("cfg", None), completions, db_id, gold_sql, kw)


def make_reward_funcs(
    kind: RewardKind,
    executor: Any = None,
    cfg: ATRConfig | None = None,
    *,
    csmr_mode: str = "exact",
    cap_partial: float = 0.9,
    gold_cache: GoldCache | None = None,
    dataset: Any = None,
    on_gold_failure: GoldFailurePolicy = "raise",
) -> list[Callable[..., list[float | None]]]:
    """TRL reward functions for ``kind`` bound to ``executor`` and ``cfg`` (one function per kind).

    ``"atr"`` and ``"atr+csmr"`` are the same reward: ATR aggregating per-turn CSMR scores.

    Args:
        gold_cache: share gold results with an environment factory (``factory.gold_cache``).
        dataset: pre-run every distinct gold query of it now, in parallel (:func:`prerun_gold`);
            ``on_gold_failure`` is ``"raise"`` or ``"flag"`` here (to drop rows, call
            :func:`prerun_gold` and train on its ``dataset``).
    """
    k = _check_kind(kind)
    scorer = _Scorer(executor, csmr_mode=csmr_mode, cap_partial=cap_partial, gold=gold_cache)
    if dataset is not None:
        if scorer.gold is None:
            raise ValueError("make_reward_funcs(dataset=...) needs an executor or a gold_cache")
        if on_gold_failure == "drop":
            raise ValueError(
                "make_reward_funcs cannot drop dataset rows; call prerun_gold(dataset, gold_cache, "
                "on_failure='drop') and train on its .dataset, or pass on_gold_failure='flag'"
            )
        prerun_gold(dataset, scorer.gold, on_failure=on_gold_failure)
    cfg = cfg or ATRConfig()

    def reward(completions, db_id=None, gold_sql=None, **kw):
        return _reward(k, scorer, cfg, completions, db_id, gold_sql, kw)

    reward.__name__ = {"binary": "binary_ex", "arctic": "arctic", "csmr": "csmr_final"}.get(
        k, "atr_csmr"
    )
    reward.__qualname__ = reward.__name__
    return [reward]
