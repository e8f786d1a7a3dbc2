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
``GOLD_TIMEOUT_FACTOR`` (4x) the policy's timeout (:class:`GoldCache`). A missing database raises
:class:`~agentic_sql.errors.DatabaseNotFoundError`.

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
# gold failures that depend on the query, not on load: cached like successes
_CACHEABLE_FAILURES = ("unsafe", "sqlite")


class GoldCache:
    """Gold results per ``(db_id, gold_sql)`` (LRU); ``get`` returns ``None`` for an unscorable example.

    Gold queries run with every row (``max_rows=None``, as :func:`agentic_sql.eval.evaluate_ex`
    does) and a longer timeout than the policy's: ``timeout_s`` (default
    ``GOLD_TIMEOUT_FACTOR * executor.timeout_s``). Only results that cannot change on a retry are
    cached: successes, refused queries and SQLite errors; a timeout, a dead worker or an out-of-memory
    failure is reported (``None``, counted in ``n_invalid``) and executed again next time.

    Raises (from :meth:`get`):
        DatabaseNotFoundError: the example's database does not exist (fail fast, spec §6).
    """

    def __init__(self, executor: Any, maxsize: int = 4096, *, timeout_s: float | None = None):
        self.executor = executor
        self.maxsize = maxsize
        if timeout_s is None and getattr(executor, "timeout_s", None) is not None:
            timeout_s = GOLD_TIMEOUT_FACTOR * float(executor.timeout_s)
        self.timeout_s = timeout_s
        self.n_invalid = 0  # failed gold executions (a cached failure counts once)
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db_id: str, gold_sql: str) -> Any:
        key = (str(db_id), str(gold_sql))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                res = self._cache[key]
                return res if res.ok else None
        if hasattr(self.executor, "db_path"):
            self.executor.db_path(db_id)  # raises DatabaseNotFoundError for an unknown database
        res = _execute(self.executor, db_id, gold_sql, timeout_s=self.timeout_s, max_rows=None)
        if not res.ok and res.error_kind == "not_found":
            from agentic_sql.errors import DatabaseNotFoundError

            raise DatabaseNotFoundError(str(db_id), "?", detail=f"gold query: {res.error}")
        if not res.ok and res.error_kind == "crash":
            from agentic_sql.errors import SandboxWorkerError

            raise SandboxWorkerError(
                f"the gold query of db {db_id!r} could not run because the sandbox failed "
                f"({res.error}); refusing to turn it into a None reward: {gold_sql}"
            )
        cacheable = res.ok or res.error_kind in _CACHEABLE_FAILURES
        if not res.ok:
            self.n_invalid += 1
            logger.warning(
                "gold SQL of db %r failed (%s); the example gets reward None%s: %s",
                db_id,
                "timeout" if res.timed_out else res.error,
                "" if cacheable else " (not cached: retried next time)",
                gold_sql,
            )
        if cacheable:
            with self._lock:
                self._cache[key] = res
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return res if res.ok else None


_OVERRIDES_OK: dict[type, bool] = {}


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
) -> TurnScore:
    """Execute ``sql`` and score it against the gold result with CSMR (error / no SQL -> 0).

    A result cut at the executor's ``max_rows`` (``truncated``) is executed again with every row,
    as :func:`agentic_sql.eval.evaluate_ex` executes predictions, and scored on that; if the
    uncapped run fails (timeout, memory), the turn scores as an error. ``result`` stays the capped
    result (what the agent is shown).
    """
    from agentic_sql.compare import column_set_score, ex_match

    if not sql or not sql.strip():
        return TurnScore(0.0, True, False, None)
    res = executor.execute(db_id, sql)
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

    What the module-level rewards use for a dataset's ``db_root`` column. The executors run queries
    in the calling thread (``isolation="thread"``: no worker processes to spawn, so a script without
    an ``if __name__ == "__main__":`` guard works; pass ``executor=SQLiteExecutor(db_root)`` for
    process isolation). They are closed at interpreter exit or by :func:`close_shared_executors`.

    Raises:
        DatabaseNotFoundError: ``db_root`` is not an existing folder.
    """
    from agentic_sql.executor import SQLiteExecutor

    key = str(Path(db_root).resolve())
    with _SHARED_LOCK:
        hit = _SHARED.get(key)
        if hit is None:
            ex = SQLiteExecutor(key, isolation="thread")
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

    def __init__(self, executor: Any = None, csmr_mode: str = "exact", cap_partial: float = 0.9):
        self.executor = executor  # bound by make_reward_funcs; None for the module-level rewards
        self.gold = GoldCache(executor) if executor is not None else None
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
        out = []
        for comp, db, gsql, (executor, gold_cache) in zip(
            completions, db_id, gold_sql, resources, strict=True
        ):
            parsed = parse_completion(comp)
            gold = gold_cache.get(db, gsql)
            ep = Episode(final_sql=parsed.final_sql, format_ok=parsed.format_ok)
            if gold is None:
                ep.gold_valid = False
                out.append(ep)
                continue
            queries = list(parsed.sql_turns) if need_turns else []
            for q in queries:
                ts = self._score(executor, db, q, gold)
                ep.turn_scores.append(ts.score)
                ep.turn_errors.append(ts.error)
            if parsed.final_sql is not None:
                ts = self._score(executor, db, parsed.final_sql, gold)
                ep.final_ok, ep.final_ex, ep.final_score = not ts.error, ts.ex, ts.score
                if need_turns:
                    ep.turn_scores.append(ts.score)
                    ep.turn_errors.append(ts.error)
            out.append(ep)
        return out

    def _score(self, executor, db, sql, gold) -> TurnScore:
        return score_query(
            executor, db, sql, gold, csmr_mode=self.csmr_mode, cap_partial=self.cap_partial
        )

    def _resources(self, kw: dict[str, Any], n: int) -> list[tuple[Any, GoldCache]]:
        """``(executor, gold cache)`` per row: ``executor=``, the bound executor, the environments'
        executor, or a shared executor per ``db_root`` value (each row its own folder)."""
        ex = kw.get("executor")
        if ex is None:
            ex = self.executor
        if ex is None and kw.get("environments"):
            ex = kw["environments"][0].executor
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
) -> list[Callable[..., list[float | None]]]:
    """TRL reward functions for ``kind`` bound to ``executor`` and ``cfg`` (one function per kind).

    ``"atr"`` and ``"atr+csmr"`` are the same reward: ATR aggregating per-turn CSMR scores.
    """
    k = _check_kind(kind)
    scorer = _Scorer(executor, csmr_mode=csmr_mode, cap_partial=cap_partial)
    cfg = cfg or ATRConfig()

    def reward(completions, db_id=None, gold_sql=None, **kw):
        return _reward(k, scorer, cfg, completions, db_id, gold_sql, kw)

    reward.__name__ = {"binary": "binary_ex", "arctic": "arctic", "csmr": "csmr_final"}.get(
        k, "atr_csmr"
    )
    reward.__qualname__ = reward.__name__
    return [reward]
