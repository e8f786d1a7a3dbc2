"""agentic-sql: multi-turn Text-to-SQL agent trained with GRPO.

Trajectory reward ATR over per-turn CSMR (column-set matching) scores, in a read-only SQLite
sandbox; plugs into TRL's ``GRPOTrainer`` through ``environment_factory`` (tool calls) or
``rollout_func`` (``<sql>``/``<solution>`` text protocol).

Imports are lazy so that ``agentic-sql --help`` stays fast: ``from agentic_sql import atr_reward``
loads only what it needs.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from papercore.lazy import lazy_getattr

try:
    __version__ = version("agentic-sql")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS: dict[str, str] = {
    # atr.py
    "ATRConfig": "atr",
    "ATRMode": "atr",
    "aggregate_trajectory_reward": "atr",
    "build_transition_matrix": "atr",
    "check_dissipative": "atr",
    "score_to_state": "atr",
    "trajectory_reward": "atr",
    # rewards.py
    "arctic_reward": "rewards",
    "atr_reward": "rewards",
    "binary_ex_reward": "rewards",
    "csmr_final_reward": "rewards",
    "make_reward_funcs": "rewards",
    "parse_completion": "rewards",
    "GoldCache": "rewards",
    "prerun_gold": "rewards",
    # env.py
    "AsyncSQLEnvironment": "env",
    "SQLEnvironment": "env",
    "make_environment_factory": "env",
    # rollout.py
    "make_sql_rollout_func": "rollout",
    "run_text_episodes": "rollout",
    # train.py
    "TrainConfig": "train",
    "build_trainer": "train",
    "load_train_config": "train",
    # executor.py, compare.py, data.py, eval.py
    "ExecResult": "executor",
    "SQLiteExecutor": "executor",
    "format_observation": "executor",
    "transpile": "executor",
    "validate_readonly": "executor",
    "column_set_score": "compare",
    "ex_match": "compare",
    "build_prompt": "data",
    "load_bird": "data",
    "load_spider": "data",
    "load_spider2_sqlite": "data",
    "make_synthetic_task_suite": "data",
    "render_schema": "data",
    "evaluate_ex": "eval",
    "run_agent_eval": "eval",
    # spider_eval.py, spider2.py (the benchmarks' own metrics)
    "evaluate_spider_ex": "spider_eval",
    "spider_result_eq": "spider_eval",
    "evaluate_spider2_sqlite": "spider2",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__ = lazy_getattr(__name__, {name: f"agentic_sql.{mod}" for name, mod in _EXPORTS.items()})


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
