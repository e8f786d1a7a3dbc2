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
it into NaN and ignores it) and a warning is logged — never a silent 0.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentic_sql.atr import ATRConfig, trajectory_reward

logger = logging.getLogger(__name__)

__all__ = [
    "ARCTIC_EXEC_OK",
    "REWARD_KINDS",
    "Episode",
    "GoldCache",
    "ParsedCompletion",
    "TurnScore",
    "arctic_reward",
    "atr_reward",
    "binary_ex_reward",
    "csmr_final_reward",
    "episode_reward",
    "make_reward_funcs",
    "parse_completion",
    "score_query",
]

RewardKind = Literal["binary", "arctic", "csmr", "atr", "atr+csmr"]
REWARD_KINDS: tuple[str, ...] = ("binary", "arctic", "csmr", "atr", "atr+csmr")
#: Arctic-Text2SQL-R1's reward for an answer that executes but is wrong
ARCTIC_EXEC_OK = 0.1

# ----------------------------------------------------------------------------------------------
# Parsing completions (text protocol and tool-call protocol)
# ----------------------------------------------------------------------------------------------

_TAG = re.compile(r"<(/?)(sql|solution)>", re.IGNORECASE)
_OBS = re.compile(r"<observation>.*?(</observation>|$)", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"</?(sql|solution|observation|think)>", re.IGNORECASE)


@dataclass
class ParsedCompletion:
    """The queries of one completion, in order, and whether its format is valid.

    ``sql_turns`` are the exploratory queries; ``final_sql`` is the submitted answer (``None`` when
    missing). ``format_ok`` needs exactly one well-formed ``<solution>`` block, after every ``<sql>``
    block, with no tag inside any block.
    """

    sql_turns: list[str] = field(default_factory=list)
    final_sql: str | None = None
    format_ok: bool = False
    reason: str = ""


def parse_completion(completion: Any) -> ParsedCompletion:
    """Parse a text-protocol string or a list of chat messages with tool calls. Never raises."""
    if isinstance(completion, list):
        return _parse_messages(completion)
    return _parse_text(str(completion or ""))


def _parse_text(text: str) -> ParsedCompletion:
    text = _OBS.sub(" ", text)  # observations are environment text, never the model's queries
    out = ParsedCompletion()
    stack: tuple[str, int] | None = None  # (open tag, start of its body)
    n_solutions = 0
    problems: list[str] = []
    for m in _TAG.finditer(text):
        closing, name = m.group(1) == "/", m.group(2).lower()
        if not closing:
            if stack is not None:
                problems.append(f"<{name}> opened inside <{stack[0]}>")
                stack = None  # nested tags: drop the outer block
            stack = (name, m.end())
            continue
        if stack is None or stack[0] != name:
            problems.append(f"unbalanced </{name}>")
            stack = None
            continue
        body = text[stack[1] : m.start()].strip()
        stack = None
        if _ANY_TAG.search(body):
            problems.append(f"tag inside <{name}>")
            continue
        if name == "sql":
            if n_solutions:
                problems.append("<sql> after <solution>")
            out.sql_turns.append(body)
        else:
            n_solutions += 1
            if out.final_sql is None:
                out.final_sql = body
    if stack is not None:
        problems.append(f"unclosed <{stack[0]}>")
    if n_solutions == 0:
        problems.append("no <solution> block")
    elif n_solutions > 1:
        problems.append("several <solution> blocks")
    if out.final_sql is not None and not out.final_sql:
        problems.append("empty <solution>")
    out.format_ok = not problems
    out.reason = "; ".join(problems)
    return out


def _parse_messages(messages: list[Any]) -> ParsedCompletion:
    out = ParsedCompletion()
    texts: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        calls = msg.get("tool_calls") or []
        if not calls and msg.get("content"):
            texts.append(str(msg["content"]))
        for call in calls:
            fn = call.get("function", call) if isinstance(call, dict) else {}
            args = fn.get("arguments") or {}
            if isinstance(args, str):
                args = {"query": args}
            query = str(args.get("query", "")).strip()
            if fn.get("name") == "execute_sql":
                out.sql_turns.append(query)
            elif fn.get("name") == "submit_answer" and out.final_sql is None:
                out.final_sql = query
    if out.final_sql is None and texts:  # a chat completion without tools: read its text tags
        return _parse_text("\n".join(texts))
    out.format_ok = bool(out.final_sql)
    out.reason = "" if out.format_ok else "no submit_answer call"
    return out


# ----------------------------------------------------------------------------------------------
# Scoring one query against gold
# ----------------------------------------------------------------------------------------------


class GoldCache:
    """Gold results per ``(db_id, gold_sql)``, executed once (LRU). ``None`` marks an invalid example."""

    def __init__(self, executor: Any, maxsize: int = 4096):
        self.executor = executor
        self.maxsize = maxsize
        self.n_invalid = 0
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db_id: str, gold_sql: str) -> Any:
        key = (str(db_id), str(gold_sql))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        res = self.executor.execute(db_id, gold_sql)
        if not res.ok:
            self.n_invalid += 1
            logger.warning(
                "gold SQL of db %r failed (%s); the example gets reward None: %s",
                db_id,
                "timeout" if res.timed_out else res.error,
                gold_sql,
            )
            res = None
        with self._lock:
            self._cache[key] = res
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return res


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
    """Execute ``sql`` and score it against the gold result with CSMR (error / no SQL -> 0)."""
    from agentic_sql.compare import column_set_score, ex_match

    if not sql or not sql.strip():
        return TurnScore(0.0, True, False, None)
    res = executor.execute(db_id, sql)
    if not res.ok or gold is None:
        return TurnScore(0.0, not res.ok, False, res)
    ex = bool(ex_match(res, gold))
    score = (
        1.0 if ex else float(column_set_score(res, gold, mode=csmr_mode, cap_partial=cap_partial))
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
    """The reward of one episode under ``kind`` (``None`` when the gold query is invalid)."""
    if not ep.gold_valid:
        return None
    kind = _check_kind(kind)
    if kind == "binary":
        return 1.0 if ep.final_ex else 0.0
    if kind == "arctic":
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


class _Scorer:
    """Builds :class:`Episode` objects for a batch from environments, rollout extras or by executing."""

    def __init__(self, executor: Any = None, csmr_mode: str = "exact", cap_partial: float = 0.9):
        self.executor = executor
        self.gold = GoldCache(executor) if executor is not None else None
        self.csmr_mode = csmr_mode
        self.cap_partial = cap_partial

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
        executor, gold_cache = self._executor_for(kw)
        out = []
        for comp, db, gsql in zip(completions, db_id, gold_sql, strict=True):
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

    def _executor_for(self, kw: dict[str, Any]) -> tuple[Any, GoldCache]:
        if kw.get("executor") is not None:
            ex = kw["executor"]
            if self.gold is None or self.gold.executor is not ex:
                self.gold = GoldCache(ex)
            return ex, self.gold
        if self.executor is not None:
            return self.executor, self.gold
        envs = kw.get("environments")
        if envs:
            ex = envs[0].executor
            if self.gold is None or self.gold.executor is not ex:
                self.gold = GoldCache(ex)
            return ex, self.gold
        root = kw.get("db_root")
        if root is not None:
            root = root[0] if isinstance(root, (list, tuple)) else root
            from agentic_sql.executor import SQLiteExecutor

            self.executor = SQLiteExecutor(root)
            self.gold = GoldCache(self.executor)
            return self.executor, self.gold
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


def _log_turn_metrics(episodes: list[Episode], kw: dict[str, Any]) -> None:
    """Per-turn CSMR statistics through TRL's ``log_metric`` (no-op outside TRL)."""
    log_metric = kw.get("log_metric")
    if log_metric is None or not episodes:
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
    if kind == "atr" or kw.get("environments") is not None or kw.get("turn_scores") is not None:
        _log_turn_metrics(eps, kw)
    return [episode_reward(kind, ep, cfg) for ep in eps]


def binary_ex_reward(completions, db_id=None, gold_sql=None, **kw) -> list[float | None]:
    """1.0 iff the final answer's result set equals gold (BIRD EX), else 0.0 (format failure -> 0).

    A TRL reward function. Pass ``executor=`` (or a ``db_root`` column) unless the rollouts come
    from :class:`~agentic_sql.env.SQLEnvironment` or :func:`~agentic_sql.rollout.make_sql_rollout_func`.
    """
    return _reward("binary", _DEFAULT_SCORER, None, completions, db_id, gold_sql, kw)


def arctic_reward(completions, db_id=None, gold_sql=None, **kw) -> list[float | None]:
    """Arctic-Text2SQL-R1: 1.0 EX-correct, 0.1 executable but wrong, 0.0 error / no answer."""
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
