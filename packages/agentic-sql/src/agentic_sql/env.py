"""The multi-turn SQL environment for TRL's ``environment_factory`` (spec §2.1, §3.1).

TRL turns every public method of the class into a tool (its Google-style docstring becomes the
tool schema), calls ``reset(**row)`` on a pooled instance before each rollout and, because the
class defines ``get_reward``, adds it as a reward function with weight 1. So the class has exactly
two public tool methods, :meth:`SQLEnvironment.execute_sql` and :meth:`SQLEnvironment.submit_answer`;
everything else is private or an attribute.

Every executed turn is scored with CSMR against the cached gold result the moment it runs, and
:meth:`SQLEnvironment.get_reward` aggregates those per-turn scores with ATR (or returns a baseline
reward when ``reward_kind`` says so), so only the reward differs between compared runs.
The text protocol (:mod:`agentic_sql.rollout`) drives the same class.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from agentic_sql.atr import ATRConfig
from agentic_sql.executor import MAX_OBS_CHARS, MAX_OBS_COLS
from agentic_sql.rewards import (
    Episode,
    GoldCache,
    GoldFailure,
    GoldFailurePolicy,
    GoldPrerun,
    _check_kind,
    episode_reward,
    prerun_gold,
    score_query,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AsyncSQLEnvironment",
    "SQLEnvironment",
    "SQLEnvironmentFactory",
    "make_environment_factory",
]

EPISODE_FINISHED = (
    "The episode is finished: the answer was already submitted. Do not call any more tools."
)
NO_TURNS_LEFT = "No turns left: the episode is over. Do not call any more tools."


class SQLEnvironment:
    """One agent episode over one task database (pooled and reused by TRL; ``reset`` clears all state).

    Args:
        executor: a shared :class:`~agentic_sql.executor.SQLiteExecutor` (owns every DB connection).
        max_turns: tool calls allowed per episode (exploratory + final); later calls are refused.
        atr: ATR constants (for ``reward_kind="atr"``).
        reward_kind: ``"atr"`` (default; ``"atr+csmr"`` is an alias), ``"binary"``, ``"arctic"`` or ``"csmr"``.
        max_obs_rows, max_cell_chars, max_obs_cols, max_obs_chars: observation bounds (rows, characters
            per cell, columns, characters in total), each cut with an explicit ``(N more ...)`` marker
            (:func:`~agentic_sql.executor.format_observation`).
        gold_cache: a :class:`~agentic_sql.rewards.GoldCache` shared by the pool (built when ``None``).
        csmr_mode, cap_partial: CSMR settings (spec §2.2).
        fallback_last_sql: with no submitted answer, score the last executed query as the answer
            (off by default: a missing answer is a format failure).

    Attributes (for logging and rewards): ``turn_scores``, ``turn_errors``, ``final_sql``,
    ``final_ex``, ``final_ok``, ``final_score``, ``n_turns``, ``done``, ``gold_valid``, ``format_ok``.
    """

    def __init__(
        self,
        executor: Any,
        *,
        max_turns: int = 5,
        atr: ATRConfig | None = None,
        reward_kind: str = "atr",
        max_obs_rows: int = 50,
        max_cell_chars: int = 100,
        max_obs_cols: int | None = MAX_OBS_COLS,
        max_obs_chars: int | None = MAX_OBS_CHARS,
        gold_cache: GoldCache | None = None,
        csmr_mode: str = "exact",
        cap_partial: float = 0.9,
        fallback_last_sql: bool = False,
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.executor = executor
        self.max_turns = int(max_turns)
        self.atr = atr or ATRConfig()
        self.reward_kind = _check_kind(reward_kind)
        self.max_obs_rows = int(max_obs_rows)
        self.max_cell_chars = int(max_cell_chars)
        self.max_obs_cols = max_obs_cols
        self.max_obs_chars = max_obs_chars
        self.gold_cache = gold_cache if gold_cache is not None else GoldCache(executor)
        self.csmr_mode = csmr_mode
        self.cap_partial = float(cap_partial)
        self.fallback_last_sql = bool(fallback_last_sql)
        self._clear()

    def _clear(self) -> None:
        self.db_id: str | None = None
        self.gold_sql: str | None = None
        self._gold: Any = None
        self.gold_valid = True
        self.turn_scores: list[float] = []
        self.turn_errors: list[bool] = []
        self.sql_history: list[str] = []
        self.final_sql: str | None = None
        self.final_ex = False
        self.final_ok = False
        self.final_score = 0.0
        self.n_turns = 0
        self.done = False
        self.format_errors: list[str] = []

    @property
    def format_ok(self) -> bool:
        """A final answer was submitted and no format problem was recorded."""
        return self.final_sql is not None and not self.format_errors

    def reset(self, **row: Any) -> str | None:
        """Start an episode for one dataset row (needs ``db_id`` and ``gold_sql``); clears all state.

        Raises:
            ValueError: the row lacks ``db_id`` or ``gold_sql``, or one of them is empty.
            DatabaseNotFoundError: the row's database does not exist (fail fast, not reward 0).
        """
        missing = [k for k in ("db_id", "gold_sql") if k not in row or row[k] is None]
        if missing:
            raise ValueError(
                f"dataset row lacks {missing}; SQLEnvironment needs the columns db_id and gold_sql "
                f"(got columns {sorted(row)})"
            )
        empty = [k for k in ("db_id", "gold_sql") if not str(row[k]).strip()]
        if empty:
            where = "" if "db_id" in empty else f" (db_id {row['db_id']!r})"
            raise ValueError(
                f"dataset row has an empty {' and an empty '.join(empty)}{where}; every row needs "
                f"a database and a gold query to be scored"
            )
        self._clear()
        self.db_id, self.gold_sql = str(row["db_id"]), str(row["gold_sql"])
        _require_db(self.executor, self.db_id)
        self._gold = self.gold_cache.get(self.db_id, self.gold_sql)
        self.gold_valid = self._gold is not None
        return None

    def execute_sql(self, query: str) -> str:
        """Run a read-only SQLite query on the task database and return the result table (or the error).

        Args:
            query: A single SQLite SELECT statement.

        Returns:
            The first rows of the result, or an error message.
        """
        return self._execute_sql(query)

    def submit_answer(self, query: str) -> str:
        """Submit the final SQL answer. Ends the episode.

        Args:
            query: The final SQLite SELECT statement.

        Returns:
            A confirmation message.
        """
        return self._submit_answer(query)

    def get_reward(self) -> float | None:
        """The episode's reward under ``reward_kind`` (``None`` when the gold query is invalid)."""
        return episode_reward(self.reward_kind, self._episode(), self.atr)

    # -- internals (private: TRL would expose public methods as tools) -------------------------

    def _wants_execution(self) -> bool:
        """The next tool call will execute its query (the episode is running and has turns left)."""
        return not self.done and self.n_turns < self.max_turns and self.db_id is not None

    def _execute_sql(self, query: str, result: Any = None) -> str:
        """:meth:`execute_sql`; ``result`` is the query's result when the caller batched it."""
        if self.done:
            return EPISODE_FINISHED
        if self.n_turns >= self.max_turns:
            return NO_TURNS_LEFT
        ts = self._run_turn(query, result)
        self.sql_history.append(str(query))
        left = self.max_turns - self.n_turns
        if left <= 0:
            self.done = True
            return f"{self._observe(ts)}\n{NO_TURNS_LEFT}"
        reminder = "1 turn left: submit your answer now." if left == 1 else f"{left} turns left."
        return f"{self._observe(ts)}\n({reminder})"

    def _submit_answer(self, query: str, result: Any = None) -> str:
        """:meth:`submit_answer`; ``result`` is the query's result when the caller batched it."""
        if self.done:
            return EPISODE_FINISHED
        if self.n_turns >= self.max_turns:
            self.done = True
            return NO_TURNS_LEFT
        ts = self._run_turn(query, result)
        self.final_sql = str(query)
        self.final_ok, self.final_ex, self.final_score = not ts.error, ts.ex, ts.score
        self.done = True
        return "Answer submitted. The episode is finished; do not call any more tools."

    def _episode(self) -> Episode:
        ep = Episode(
            turn_scores=list(self.turn_scores),
            turn_errors=list(self.turn_errors),
            final_sql=self.final_sql,
            final_ok=self.final_ok,
            final_ex=self.final_ex,
            final_score=self.final_score,
            format_ok=self.format_ok,
            gold_valid=self.gold_valid,
        )
        if self.final_sql is None and self.fallback_last_sql and self.sql_history:
            ep.final_sql = self.sql_history[-1]
            ep.final_ok = not self.turn_errors[-1]
            ep.final_score = self.turn_scores[-1]
            ep.final_ex = ep.final_ok and ep.final_score >= 1.0
            ep.format_ok = not self.format_errors
        return ep

    def _run_turn(self, query: str, result: Any = None) -> Any:
        if self.db_id is None:
            raise RuntimeError("SQLEnvironment.reset(**row) must be called before the first turn")
        ts = score_query(
            self.executor,
            self.db_id,
            str(query or ""),
            self._gold,
            csmr_mode=self.csmr_mode,
            cap_partial=self.cap_partial,
            result=result,
        )
        self.turn_scores.append(ts.score)
        self.turn_errors.append(ts.error)
        self.n_turns += 1
        return ts

    def _observe(self, ts: Any) -> str:
        from agentic_sql.executor import format_observation

        if ts.result is None:
            return "Error: empty query."
        return format_observation(
            ts.result,
            max_rows=self.max_obs_rows,
            max_cell_chars=self.max_cell_chars,
            max_cols=self.max_obs_cols,
            max_chars=self.max_obs_chars,
        )

    def _mark_format_error(self, reason: str) -> None:
        """Record a protocol violation (text protocol: unbalanced / nested tags, no answer)."""
        self.format_errors.append(reason)


def _require_db(executor: Any, db_id: str) -> None:
    """Fail fast on an unknown database (the executor's ``db_path`` raises or the file is absent)."""
    from agentic_sql.errors import DatabaseNotFoundError

    path = executor.db_path(db_id)
    if not os.path.exists(path):
        raise DatabaseNotFoundError(db_id, path)


class AsyncSQLEnvironment(SQLEnvironment):
    """:class:`SQLEnvironment` whose tools are coroutines (``async def``), for TRL's async tool path.

    Each call runs the synchronous tool in a thread (``asyncio.to_thread``), so the query itself
    runs on the shared executor's worker-process pool and several calls can be in flight at once.
    What TRL 1.16 actually gathers (read from ``GRPOTrainer._tool_call_loop``): the async tool
    calls *of one assistant message* are run together with ``asyncio.gather``; the rollouts of a
    batch are still visited one after the other. So this helps when a model emits several tool
    calls in one turn; across the batch, the text protocol (:mod:`agentic_sql.rollout`) batches
    every episode's query of a turn through ``execute_many``. Select it with
    ``make_environment_factory(..., async_tools=True)``.
    """

    async def execute_sql(self, query: str) -> str:  # type: ignore[override]
        """Run a read-only SQLite query on the task database and return the result table (or the error).

        Args:
            query: A single SQLite SELECT statement.

        Returns:
            The first rows of the result, or an error message.
        """
        return await asyncio.to_thread(self._execute_sql, query)

    async def submit_answer(self, query: str) -> str:  # type: ignore[override]
        """Submit the final SQL answer. Ends the episode.

        Args:
            query: The final SQLite SELECT statement.

        Returns:
            A confirmation message.
        """
        return await asyncio.to_thread(self._submit_answer, query)


class SQLEnvironmentFactory:
    """``environment_factory`` for TRL: one shared executor and gold cache, a new environment per call.

    With ``dataset`` every distinct gold query is run once at construction, in parallel on the
    executor's pool (:func:`~agentic_sql.rewards.prerun_gold`), so ``reset`` never executes one;
    ``on_gold_failure`` decides what rows whose gold query cannot run become (``"raise"``,
    ``"drop"``: removed from :attr:`dataset`, or ``"flag"``: reward ``None``), never a wrong score.

    Attributes:
        dataset: the dataset to train on (``None`` without ``dataset``; rows dropped with ``"drop"``).
        gold_report: the :class:`~agentic_sql.rewards.GoldPrerun` of the pre-run (or ``None``).
    """

    def __init__(
        self,
        executor: Any,
        *,
        env_cls: type = SQLEnvironment,
        dataset: Any = None,
        on_gold_failure: GoldFailurePolicy = "raise",
        gold_cache: GoldCache | None = None,
        **env_kwargs: Any,
    ):
        self.executor = executor
        self.gold_cache = gold_cache if gold_cache is not None else GoldCache(executor)
        self.env_cls = env_cls
        self.env_kwargs = env_kwargs
        env_cls(executor, gold_cache=self.gold_cache, **env_kwargs)  # validate arguments now
        self.gold_report: GoldPrerun | None = None
        self.dataset = None
        if dataset is not None:
            self.gold_report = prerun_gold(dataset, self.gold_cache, on_failure=on_gold_failure)
            self.dataset = self.gold_report.dataset

    def __call__(self) -> SQLEnvironment:
        return self.env_cls(self.executor, gold_cache=self.gold_cache, **self.env_kwargs)

    def gold_failures(self) -> list[GoldFailure]:
        """The gold queries that cannot run, with the dataset rows using them (from the pre-run)
        and any found later by ``reset``."""
        seen = list(self.gold_report.failures) if self.gold_report is not None else []
        keys = {(f.db_id, f.gold_sql) for f in seen}
        return seen + [f for f in self.gold_cache.failures() if (f.db_id, f.gold_sql) not in keys]

    def close(self) -> None:
        self.executor.close()


def make_environment_factory(
    db_root: str | os.PathLike | None = None,
    *,
    executor: Any = None,
    timeout_s: float = 5.0,
    isolation: str = "process",
    max_workers: int = 2,
    dataset: Any = None,
    on_gold_failure: GoldFailurePolicy = "raise",
    async_tools: bool = False,
    **env_kwargs: Any,
) -> SQLEnvironmentFactory:
    """Build the ``environment_factory`` for ``GRPOTrainer`` over the databases under ``db_root``.

    ``env_kwargs`` go to :class:`SQLEnvironment` (``max_turns``, ``atr``, ``reward_kind``, ...);
    ``env_cls=`` selects a subclass, ``async_tools=True`` the :class:`AsyncSQLEnvironment`.
    ``timeout_s`` is the per-query training timeout (spec default 5 s; evaluation uses 30 s).
    ``isolation`` defaults to ``"process"``: the policy's SQL is untrusted, and only worker
    processes give a hard timeout (see :class:`~agentic_sql.executor.SQLiteExecutor`).

    ``dataset`` (recommended for training): pre-run every distinct gold query once, in parallel,
    now; with ``on_gold_failure="drop"`` train on ``factory.dataset``. See
    :class:`SQLEnvironmentFactory`.
    """
    if async_tools:
        if "env_cls" in env_kwargs and not issubclass(env_kwargs["env_cls"], AsyncSQLEnvironment):
            raise ValueError(
                f"async_tools=True needs an AsyncSQLEnvironment subclass as env_cls, got "
                f"{env_kwargs['env_cls'].__name__}"
            )
        env_kwargs.setdefault("env_cls", AsyncSQLEnvironment)
    if executor is None:
        if db_root is None:
            raise ValueError("make_environment_factory needs db_root or executor")
        from agentic_sql.executor import SQLiteExecutor

        executor = SQLiteExecutor(
            db_root, timeout_s=timeout_s, isolation=isolation, max_workers=max_workers
        )
    return SQLEnvironmentFactory(
        executor, dataset=dataset, on_gold_failure=on_gold_failure, **env_kwargs
    )
