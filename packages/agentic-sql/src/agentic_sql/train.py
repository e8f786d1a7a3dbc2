"""GRPO training of a multi-turn SQL agent with TRL's ``GRPOTrainer`` (spec §2.4, §3.1).

One dataclass, :class:`TrainConfig`, holds every setting; :func:`load_train_config` reads it from
YAML; :func:`build_trainer` wires the environment, the rewards and ``GRPOConfig`` into a
``GRPOTrainer`` (no GRPO loop of our own); :func:`train` runs it with checkpointing and resume.

Two protocols, same environment and rewards:

* ``protocol: tools`` (default) — TRL ``environment_factory``: the model calls ``execute_sql`` /
  ``submit_answer`` through its chat template's tool calls; the environment's ``get_reward``
  (ATR, or the baseline named by ``reward``) is the training reward; binary EX is logged with
  weight 0.
* ``protocol: text`` — ``rollout_func`` with ``<sql>``/``<solution>`` tags, for any tokenizer.

Model loading: given a model id or path (the normal case), the *trainer* loads the model, on
each rank, with ``grpo.model_init_kwargs`` (``dtype``, ``attn_implementation``, ``device_map``,
``revision``, ...; ``model_dtype`` is a shorthand for ``model_init_kwargs.dtype``); nothing is
materialised before ``GRPOTrainer`` exists. Under a multi-process launch ``device_map`` defaults to
``None`` (each rank's copy is placed by accelerate / DeepSpeed / FSDP, never all on ``cuda:0``).

Multi-GPU: ``accelerate launch --config_file zero3.yaml -m agentic_sql.cli train --config cfg.yaml``
(tools protocol: DDP, DeepSpeed ZeRO-1/2/3, FSDP, vLLM server or colocate; text protocol: DDP,
ZeRO-1/2, ZeRO-3 with ``ds3_gather_for_generation: true`` (the default), vLLM colocate with
``vllm_tensor_parallel_size: 1`` — FSDP and ZeRO-3 without gathering are refused at construction).
GPU sampling: ``grpo: {use_vllm: true, vllm_mode: colocate}``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentic_sql.atr import ATRConfig
from agentic_sql.rewards import REWARD_KINDS, make_reward_funcs

logger = logging.getLogger(__name__)

__all__ = [
    "TextProtocolRollout",
    "TrainConfig",
    "TrajectorySFTTask",
    "build_trainer",
    "check_text_protocol_setup",
    "check_dataset_columns",
    "latest_checkpoint",
    "load_train_config",
    "model_init_kwargs",
    "train",
    "trajectory_sft_pairs",
    "warm_start_sft",
]

REQUIRED_COLUMNS = ("prompt", "db_id", "gold_sql")


@dataclass
class TrainConfig:
    """Everything a GRPO run needs (YAML keys are the field names).

    Args:
        model: model name or local path (loaded offline first through papercore).
        output_dir: checkpoints, logs and the final model.
        db_root: ``<db_root>/<db_id>/<db_id>.sqlite`` databases. With ``data.kind: synthetic`` the
            suite is written there only if the folder is new, empty or an earlier suite (else
            :class:`~agentic_sql.errors.UnsafeOutputDirError`); without ``db_root`` it goes to
            ``<output_dir>/synthetic``.
        data: empty (the default) = the synthetic suite, which needs ``db_root`` unset (a
            ``db_root`` without ``data`` raises: say which split to train on);
            ``{"kind": "synthetic", "n_dbs": 4, "n_questions": 200, "seed": 0}`` (trains on the
            suite's ``split: train`` questions unless ``split`` says ``test`` or ``all``),
            ``{"kind": "jsonl", "path": "train.jsonl"}`` (rows with prompt, db_id, gold_sql), or
            ``{"kind": "bird" | "spider", "path": "train.json"}``.
        protocol: ``"tools"`` (environment_factory) or ``"text"`` (rollout_func).
        reward: ``"atr"`` (ATR over per-turn CSMR; ``"atr+csmr"`` is an alias), ``"binary"``,
            ``"arctic"`` or ``"csmr"`` (final-answer CSMR).
        max_turns: turns per episode (spec default 5).
        timeout_s: per-query timeout while training (spec default 5 s).
        isolation: executor isolation, ``"process"`` or ``"thread"``.
        atr: :class:`~agentic_sql.atr.ATRConfig` fields.
        csmr_mode, cap_partial: CSMR settings.
        max_new_tokens_per_turn: text protocol only.
        on_gold_failure: a gold query that fails or times out when pre-run at trainer construction:
            ``"drop"`` its rows (counted and logged; the default), ``"raise"``, or ``"flag"`` (keep the
            rows; their reward is ``None``).
        hf_generation_batch_size: text protocol with transformers generation (no vLLM): prompts
            per ``generate`` call in a rollout turn (lower it when generation runs out of memory).
        grpo: any ``trl.GRPOConfig`` field (num_generations, learning_rate, max_steps, beta, use_vllm,
            ``model_init_kwargs`` such as ``{dtype: bfloat16, attn_implementation: flash_attention_2}``,
            ...), plus ``model_dtype`` (shorthand for ``model_init_kwargs.dtype``).
        peft: LoRA settings (``peft.LoraConfig`` fields) or ``None``.
        resume: ``True`` = resume from the latest checkpoint in ``output_dir`` when there is one;
            a path = that checkpoint; ``False`` = start fresh.
        seed: the run's seed.
    """

    model: str
    output_dir: str = "runs/agentic-sql"
    db_root: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    protocol: str = "tools"
    reward: str = "atr"
    max_turns: int = 5
    timeout_s: float = 5.0
    isolation: str = "process"
    atr: dict[str, Any] = field(default_factory=dict)
    csmr_mode: str = "exact"
    cap_partial: float = 0.9
    max_new_tokens_per_turn: int = 512
    hf_generation_batch_size: int = 64
    on_gold_failure: str = "drop"
    grpo: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] | None = None
    resume: bool | str = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in ("tools", "text"):
            raise ValueError(f"protocol must be 'tools' or 'text', got {self.protocol!r}")
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"reward must be one of {list(REWARD_KINDS)}, got {self.reward!r}")
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if self.csmr_mode not in ("exact", "jaccard", "rows"):
            raise ValueError(
                f"csmr_mode must be 'exact', 'jaccard' or 'rows', got {self.csmr_mode!r}"
            )
        if not isinstance(self.data, dict):
            raise ValueError(
                f"data must be a mapping such as {{kind: bird, path: train.json}}, got {self.data!r}"
            )
        if not isinstance(self.grpo, dict):
            raise ValueError(f"grpo must be a mapping of GRPOConfig fields, got {self.grpo!r}")
        if self.on_gold_failure not in ("raise", "drop", "flag"):
            raise ValueError(
                f"on_gold_failure must be 'raise', 'drop' or 'flag', got {self.on_gold_failure!r}"
            )
        if int(self.hf_generation_batch_size) < 1:
            raise ValueError(
                f"hf_generation_batch_size must be >= 1, got {self.hf_generation_batch_size}"
            )
        mik = self.grpo.get("model_init_kwargs")
        if mik is not None and not isinstance(mik, dict):
            raise ValueError(
                f"grpo.model_init_kwargs must be a mapping of from_pretrained arguments "
                f"(e.g. {{dtype: bfloat16, attn_implementation: sdpa}}), got {mik!r}"
            )
        self.atr_config()  # validate early (raises on beta <= alpha etc.)

    def atr_config(self) -> ATRConfig:
        return ATRConfig(**self.atr)


def load_train_config(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from YAML; unknown keys raise an error naming them."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML{_yaml_where(e)}: {_yaml_problem(e)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping of settings, got {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known settings: {sorted(known)}")
    if "model" not in raw:
        raise ValueError(f"{path}: the setting 'model' (name or local path) is required")
    cfg = TrainConfig(**raw)
    check_train_config(cfg, where=str(path))
    return cfg


_EXTRA_GRPO_KEYS = frozenset({"model_dtype"})  # ours: dtype of the policy we load


def check_grpo_keys(grpo: dict[str, Any], where: str = "the config") -> None:
    """Raise ``ValueError`` naming every ``grpo:`` key that is not a ``trl.GRPOConfig`` field."""
    from trl import GRPOConfig

    known = {f.name for f in dataclasses.fields(GRPOConfig)} | _EXTRA_GRPO_KEYS
    unknown = sorted(set(grpo) - known)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hint = "; ".join(f"{k!r} (did you mean {v[0]!r}?)" for k, v in hints.items() if v)
        raise ValueError(
            f"{where}: unknown grpo setting(s) {unknown}: every key under grpo: must be a "
            f"trl.GRPOConfig field (or model_dtype)" + (f"; {hint}" if hint else "")
        )


def check_model_name(name: str) -> None:
    """Raise when ``name`` can be neither a local model folder nor a hub id ``org/name``.

    Checked before anything is written or loaded. A hub id is not looked up here (offline
    machines); an existing path must be a folder.
    """
    from papercore.errors import ModelNotAvailableError
    from papercore.models import is_hub_id

    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelNotAvailableError(
                f"model {name!r} is a file; expected a model folder (with config.json) or a hub id"
            )
        return
    if not is_hub_id(name):
        raise ModelNotAvailableError(
            f"model {name!r} is not an existing folder (resolved to {str(p.absolute())!r}) and not a "
            f"hub id of the form 'org/name'"
        )


def check_train_config(cfg: TrainConfig, where: str = "the config") -> None:
    """Everything that can be checked before writing or loading anything: the ``grpo:`` keys, the
    model name, and ``db_root`` with a data source (a ``db_root`` without ``data:`` would otherwise
    mean "build the synthetic suite there")."""
    check_grpo_keys(cfg.grpo, where)
    check_model_name(str(cfg.model))
    if cfg.db_root is not None and not cfg.data:
        raise ValueError(
            f"{where}: db_root is set ({cfg.db_root!r}) but data is not: say which split to train on "
            f"(data: {{kind: bird, path: .../train.json}}), or leave out db_root to train on the "
            f"synthetic suite (written to <output_dir>/synthetic); nothing was written"
        )


def _yaml_where(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(e: Exception) -> str:
    text = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return " ".join(f"{context} {text}".split()) if context else " ".join(str(text).split())


def check_dataset_columns(dataset: Any) -> None:
    """Raise ``ValueError`` listing the columns a training dataset lacks (spec §6)."""
    cols = set(
        getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else [])
    )
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ValueError(
            f"the training dataset lacks the column(s) {missing}; SQL GRPO needs {list(REQUIRED_COLUMNS)} "
            f"(got {sorted(cols)})"
        )


def _load_dataset(cfg: TrainConfig) -> tuple[Any, str]:
    """``(dataset, db_root)`` from ``cfg.data``."""
    from agentic_sql import data as data_mod

    if cfg.db_root is not None and not cfg.data:
        raise ValueError(
            f"db_root is set ({cfg.db_root!r}) but data is not: say which split to train on "
            f"(data: {{kind: bird, path: .../train.json}}); nothing was written"
        )
    kind = str(cfg.data.get("kind", "synthetic"))
    opts = {k: v for k, v in cfg.data.items() if k not in ("kind", "path", "split")}
    opts.setdefault("protocol", cfg.protocol)  # prompts explain the protocol and the turn budget
    opts.setdefault("max_turns", cfg.max_turns)
    if kind == "synthetic":
        out_dir = cfg.db_root or str(Path(cfg.output_dir) / "synthetic")
        ds, root = data_mod.make_synthetic_task_suite(out_dir=out_dir, **opts)
        return _maybe_split(ds, cfg.data.get("split", "train")), str(root)
    if cfg.db_root is None:
        raise ValueError(f"data.kind={kind!r} needs db_root (the folder of <db_id>/<db_id>.sqlite)")
    path = cfg.data.get("path")
    if not path:
        raise ValueError(f"data.kind={kind!r} needs data.path")
    if kind == "jsonl":  # rows already carry their prompt
        from papercore.io import read_table, to_dataset

        return to_dataset(read_table(path, required=list(REQUIRED_COLUMNS))), cfg.db_root
    loaders = {"bird": "load_bird", "spider": "load_spider", "spider2": "load_spider2_sqlite"}
    if kind not in loaders:
        raise ValueError(
            f"unknown data.kind {kind!r}; expected one of ['synthetic', 'jsonl', *{sorted(loaders)}]"
        )
    return getattr(data_mod, loaders[kind])(path, cfg.db_root, **opts), cfg.db_root


def check_db_ids(dataset: Any, db_root: str | os.PathLike) -> None:
    """Raise :class:`~agentic_sql.errors.DatabaseNotFoundError` for the first ``db_id`` of the dataset
    without a database under ``db_root`` (checked before the model is loaded)."""
    from agentic_sql.errors import DatabaseNotFoundError
    from agentic_sql.executor import find_db_path

    ids = dataset["db_id"] if hasattr(dataset, "column_names") else [r["db_id"] for r in dataset]
    seen: set[str] = set()
    for i, db_id in enumerate(ids):
        if db_id in seen:
            continue
        try:
            find_db_path(db_root, db_id)
        except DatabaseNotFoundError as e:
            raise DatabaseNotFoundError(
                str(db_id), e.path, detail=f"training row {i} ({len(set(ids))} distinct db_ids)"
            ) from None
        seen.add(db_id)


def _maybe_split(ds: Any, split: str | None) -> Any:
    """The rows of ``split`` (``"train"`` / ``"test"``); ``None`` or ``"all"`` keeps every row."""
    if split is None or split == "all" or "split" not in ds.column_names:
        return ds
    if split not in ("train", "test"):
        raise ValueError(f"data.split must be 'train', 'test' or 'all', got {split!r}")
    out = ds.filter(lambda r: r["split"] == split)
    if len(out) == 0:
        raise ValueError(f"the synthetic suite has no {split!r} questions")
    return out


def build_trainer(
    cfg: TrainConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    train_dataset: Any = None,
    db_root: str | os.PathLike | None = None,
    executor: Any = None,
    callbacks: list[Any] | None = None,
    extra_reward_funcs: list[Any] | None = None,
    env_cls: type | None = None,
) -> Any:
    """A ready ``trl.GRPOTrainer`` for ``cfg`` (objects passed here override the config's).

    ``extra_reward_funcs`` are added with weight 0: logged (``rewards/<name>/mean``), not trained on.
    ``env_cls`` swaps in a :class:`~agentic_sql.env.SQLEnvironment` subclass.

    Raises:
        ValueError: the dataset lacks prompt / db_id / gold_sql, or ``protocol="tools"`` with a
            tokenizer whose chat template cannot render tool calls (use ``protocol="text"``).
    """
    from trl import GRPOConfig, GRPOTrainer

    from agentic_sql.env import make_environment_factory

    check_grpo_keys(cfg.grpo)
    if model is None or isinstance(model, (str, os.PathLike)):
        check_model_name(str(model or cfg.model))
    if train_dataset is None:
        train_dataset, root = _load_dataset(cfg)
        db_root = db_root or root
    db_root = db_root or cfg.db_root
    check_dataset_columns(train_dataset)
    if executor is None and db_root is not None:
        check_db_ids(train_dataset, db_root)
    grpo = {k: v for k, v in cfg.grpo.items() if k != "model_dtype"}
    if model is None or isinstance(model, (str, os.PathLike)):
        from papercore.models import load_tokenizer

        # The trainer loads the model from its id on every rank (GRPOConfig.model_init_kwargs):
        # nothing is materialised here, so no rank puts a copy on cuda:0 before the trainer exists.
        model = str(model or cfg.model)
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
        grpo["model_init_kwargs"] = model_init_kwargs(cfg)
    elif cfg.grpo.get("model_init_kwargs") or "model_dtype" in cfg.grpo:
        from agentic_sql.errors import DistributedSetupError

        raise DistributedSetupError(
            "grpo.model_init_kwargs / model_dtype only apply when the model is given by id or path "
            f"(the trainer loads it); got an already loaded {type(model).__name__}: pass its path "
            "instead, or drop model_init_kwargs"
        )
    if tokenizer is None:
        raise ValueError("build_trainer needs the tokenizer when a model object is passed")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.protocol == "tools":
        _check_tool_support(tokenizer)

    atr = cfg.atr_config()
    env_factory = make_environment_factory(
        db_root,
        executor=executor,
        timeout_s=cfg.timeout_s,
        isolation=cfg.isolation,
        max_turns=cfg.max_turns,
        atr=atr,
        reward_kind=cfg.reward,
        csmr_mode=cfg.csmr_mode,
        cap_partial=cfg.cap_partial,
        dataset=train_dataset,  # every distinct gold runs once now, in parallel
        on_gold_failure=cfg.on_gold_failure,
        **({"env_cls": env_cls} if env_cls is not None else {}),
    )
    train_dataset = env_factory.dataset  # without the failing-gold rows under "drop"
    gold = env_factory.gold_cache
    grpo.setdefault("output_dir", cfg.output_dir)
    grpo.setdefault("seed", cfg.seed)
    grpo.setdefault("report_to", "none")
    logged = make_reward_funcs(  # EX, logged with weight 0
        "binary", env_factory.executor, atr, gold_cache=gold
    )
    if cfg.protocol == "tools":
        grpo.setdefault("max_tool_calling_iterations", cfg.max_turns)
        grpo["reward_weights"] = [0.0]  # TRL appends SQLEnvironment.get_reward with weight 1
        reward_funcs, extra = logged, {"environment_factory": env_factory}
    else:
        train_funcs = make_reward_funcs(
            cfg.reward,
            env_factory.executor,
            atr,
            csmr_mode=cfg.csmr_mode,
            cap_partial=cfg.cap_partial,
            gold_cache=gold,
        )
        reward_funcs = train_funcs + (logged if cfg.reward != "binary" else [])
        grpo["reward_weights"] = [1.0] + [0.0] * (len(reward_funcs) - 1)
        rollout = TextProtocolRollout(
            env_factory,
            max_turns=cfg.max_turns,
            max_new_tokens_per_turn=cfg.max_new_tokens_per_turn,
            hf_generation_batch_size=cfg.hf_generation_batch_size,
        )
        extra = {"rollout_func": rollout}
    if extra_reward_funcs:
        reward_funcs = reward_funcs + list(extra_reward_funcs)
        grpo["reward_weights"] = grpo["reward_weights"] + [0.0] * len(extra_reward_funcs)
    peft_config = None
    if cfg.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(**cfg.peft)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=GRPOConfig(**grpo),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        **extra,
    )
    trainer._agentic_sql_env_factory = env_factory
    if cfg.protocol == "text":
        try:
            check_text_protocol_setup(trainer)
        except Exception:
            env_factory.close()
            raise
    return trainer


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}


def model_init_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The ``from_pretrained`` arguments the trainer loads the policy with (``GRPOConfig.model_init_kwargs``).

    ``grpo.model_init_kwargs`` as given, with ``grpo.model_dtype`` as ``dtype`` (giving both raises).
    Without a ``dtype`` TRL loads in float32 (its default, for fp32 master weights). Under a
    multi-process launch ``device_map`` defaults to ``None``: each rank's copy is then placed by the
    trainer (DDP: this rank's GPU; DeepSpeed ZeRO-3 shards it at load time; FSDP shards it at
    ``prepare``), instead of ``device_map="auto"`` spreading every rank's copy over all GPUs.
    """
    from accelerate import PartialState

    from agentic_sql.errors import DistributedSetupError

    out = dict(cfg.grpo.get("model_init_kwargs") or {})
    if "model_dtype" in cfg.grpo:
        if "dtype" in out and out["dtype"] != cfg.grpo["model_dtype"]:
            raise DistributedSetupError(
                f"grpo.model_dtype ({cfg.grpo['model_dtype']!r}) and grpo.model_init_kwargs.dtype "
                f"({out['dtype']!r}) disagree; set only one"
            )
        out["dtype"] = cfg.grpo["model_dtype"]
    if isinstance(out.get("dtype"), str):  # TRL accepts the torch names and "auto" only
        out["dtype"] = _DTYPE_ALIASES.get(out["dtype"].lower(), out["dtype"])
    if PartialState().num_processes > 1:
        out.setdefault("device_map", None)
    return out


# ----------------------------------------------------------------------------------------------
# Text protocol under accelerate / DeepSpeed: gather parameters for generation, keep ranks in step
# ----------------------------------------------------------------------------------------------


class _CurrentBackend:
    """A papercore generation backend that forwards to the one set for the current rollout call."""

    def __init__(self) -> None:
        self.current: Any = None

    def generate(self, prompts: Any, cfg: Any) -> Any:
        if self.current is None:  # pragma: no cover - only reachable through misuse
            raise RuntimeError("no generation backend is set outside a rollout call")
        return self.current.generate(prompts, cfg)


class TextProtocolRollout:
    """The text-protocol ``rollout_func`` with generation done the way TRL does its own.

    Each call (one per rank per generation step, so every rank enters it in step) generates inside
    TRL's :func:`trl.models.unwrap_model_for_generation` (DeepSpeed ZeRO-3: the parameters are
    gathered once for the whole multi-turn rollout, so ranks with different turn counts never wait
    on each other's forward passes) with a papercore transformers backend of
    ``hf_generation_batch_size`` prompts per ``generate`` call. With ``use_vllm`` (colocate) the
    trainer's vLLM engine generates instead.
    """

    def __init__(
        self,
        env_factory: Any,
        *,
        max_turns: int = 5,
        max_new_tokens_per_turn: int = 512,
        hf_generation_batch_size: int = 64,
    ) -> None:
        from agentic_sql.rollout import make_sql_rollout_func

        if int(hf_generation_batch_size) < 1:
            raise ValueError(
                f"hf_generation_batch_size must be >= 1, got {hf_generation_batch_size}"
            )
        self.hf_generation_batch_size = int(hf_generation_batch_size)
        self._backend = _CurrentBackend()
        common = {"max_turns": max_turns, "max_new_tokens_per_turn": max_new_tokens_per_turn}
        self._hf = make_sql_rollout_func(env_factory, generator=self._backend, **common)
        self._vllm = make_sql_rollout_func(env_factory, backend="vllm", **common)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        if getattr(trainer, "use_vllm", False):
            return self._vllm(prompts, trainer)
        from trl.models import unwrap_model_for_generation

        from papercore.generation import make_backend

        tok = trainer.processing_class
        tok = getattr(tok, "tokenizer", tok)
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        ) as unwrapped:
            self._backend.current = make_backend(
                "transformers",
                model=unwrapped,
                tokenizer=tok,
                batch_size=self.hf_generation_batch_size,
            )
            try:
                return self._hf(prompts, trainer)
            finally:
                self._backend.current = None


def check_text_protocol_setup(trainer: Any) -> None:
    """Refuse the distributed setups where text-protocol rollouts would hang or be wrong.

    A multi-turn rollout runs a different number of forward passes on each rank. That is safe when
    each rank holds the whole model while generating (DDP, ZeRO-1/2, ZeRO-3 with parameters
    gathered by ``ds3_gather_for_generation=True``) or generates through vLLM colocate with
    tensor parallel size 1. It hangs when every forward pass is a collective (FSDP, ZeRO-3 without
    gathering), and vLLM colocate with TP > 1 needs the same prompts on every rank of a TP group.

    Raises:
        DistributedSetupError: naming the setting and what to use instead (``protocol: tools``).
    """
    from agentic_sql.errors import DistributedSetupError

    args = trainer.args
    hint = "use protocol: tools (TRL's own multi-turn loop), or DDP / DeepSpeed ZeRO-1/2/3"
    if getattr(trainer, "is_fsdp_enabled", False):
        raise DistributedSetupError(
            f"protocol: text cannot run under FSDP (each forward pass is a collective and ranks "
            f"play different numbers of turns); {hint}"
        )
    dist = getattr(trainer, "_dist", None)
    if getattr(dist, "is_zero3", False) and not args.ds3_gather_for_generation:
        raise DistributedSetupError(
            "protocol: text under DeepSpeed ZeRO-3 needs grpo.ds3_gather_for_generation: true (got "
            "false): without gathering, each forward pass is a collective and ranks that play "
            f"different numbers of turns hang; {hint}"
        )
    if getattr(trainer, "use_vllm", False):
        if args.vllm_mode != "colocate":
            raise DistributedSetupError(
                f"protocol: text drives vLLM in colocate mode only (got vllm_mode={args.vllm_mode!r}); "
                f"use vllm_mode: colocate, or protocol: tools for a vLLM server"
            )
        tp = int(getattr(args, "vllm_tensor_parallel_size", 1) or 1)
        if tp != 1:
            raise DistributedSetupError(
                f"protocol: text supports vLLM colocate with vllm_tensor_parallel_size: 1 only (got "
                f"{tp}): each rank plays its own episodes; use protocol: tools for tensor parallelism"
            )


def _check_tool_support(tokenizer: Any) -> None:
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("5.2.0"):
        raise ValueError(
            f"protocol='tools' uses TRL's environment_factory, which needs transformers >= 5.2 "
            f"(installed: {transformers.__version__}); upgrade transformers or use protocol='text'"
        )
    from trl.chat_template_utils import supports_tool_calling

    if getattr(tokenizer, "chat_template", None) is None or not supports_tool_calling(tokenizer):
        raise ValueError(
            "protocol='tools' needs a chat template that renders tool calls (e.g. Qwen2.5/Qwen3); "
            "this tokenizer's cannot, so use protocol='text' (<sql>/<solution> tags work with any tokenizer)"
        )


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``output_dir`` (or ``None``)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    ckpts = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    if not ckpts:
        return None
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1])))


def train(cfg: TrainConfig, **build_kwargs: Any) -> dict[str, Any]:
    """Build the trainer, train (resuming when asked), save the final model; returns the train metrics."""
    from papercore.seeding import seed_everything

    seed_everything(cfg.seed)
    trainer = build_trainer(cfg, **build_kwargs)
    resume: str | None = None
    if cfg.resume is True:
        resume = latest_checkpoint(trainer.args.output_dir)
    elif isinstance(cfg.resume, str) and cfg.resume:
        if not Path(cfg.resume).is_dir():
            raise FileNotFoundError(f"resume checkpoint not found: {cfg.resume}")
        resume = cfg.resume
    if resume:
        logger.info("resuming from %s", resume)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(trainer.args.output_dir)
    finally:
        trainer._agentic_sql_env_factory.close()
    metrics = dict(result.metrics)
    metrics["resumed_from"] = resume
    return metrics


# ----------------------------------------------------------------------------------------------
# SFT warm start (tiny models in tests, demo and bench): teach the call format before GRPO
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectorySFTTask:
    """A papercore ``SyntheticTask`` sampling fixed ``(prompt text, target text)`` pairs."""

    pairs: tuple[tuple[str, str], ...]
    name: str = "sql-trajectories"

    def params(self) -> dict[str, Any]:
        return {"pairs": [list(p) for p in self.pairs]}

    def sample(self, rng: Any) -> tuple[str, str]:
        return rng.choice(self.pairs)


def trajectory_sft_pairs(
    rows: Any,
    trajectories: Any,
    tokenizer: Any,
    env_factory: Any,
    *,
    protocol: str = "text",
) -> list[tuple[str, str]]:
    """One SFT pair per model turn of each scripted trajectory, with real observations.

    ``trajectories[i]`` lists the queries of row ``i``: exploratory ones, then the final answer.
    Each pair is ``(everything before the turn, the turn)``, rendered as the trainer will see it
    (``protocol="tools"``: the chat template's tool calls; ``"text"``: ``<sql>``/``<solution>`` tags
    and ``<observation>`` feedback), so the loss never covers observation tokens.
    """
    from agentic_sql.rollout import observation_text
    from papercore.generation import render_prompt

    pairs: list[tuple[str, str]] = []
    for row, queries in zip(rows, trajectories, strict=True):
        env = env_factory()
        env.reset(**row)
        if protocol == "text":
            prefix = render_prompt(row["prompt"], tokenizer)
            for i, q in enumerate(queries):
                final = i == len(queries) - 1
                turn = f"<solution>{q}</solution>" if final else f"<sql>{q}</sql>"
                pairs.append((prefix, turn))
                if not final:
                    prefix += turn + observation_text(env.execute_sql(q))
            continue
        tools = [env.execute_sql, env.submit_answer]
        msgs = list(row["prompt"])
        for i, q in enumerate([*queries, None]):
            before = tokenizer.apply_chat_template(
                msgs, tools=tools, add_generation_prompt=True, tokenize=False
            )
            if q is None:  # after submitting: a short closing message without tool calls
                msg = {"role": "assistant", "content": "Done."}
            else:
                name = "submit_answer" if i == len(queries) - 1 else "execute_sql"
                call = {"type": "function", "function": {"name": name, "arguments": {"query": q}}}
                msg = {"role": "assistant", "content": "", "tool_calls": [call]}
            full = tokenizer.apply_chat_template([*msgs, msg], tools=tools, tokenize=False)
            if not full.startswith(before):
                raise ValueError(
                    "the chat template is not prefix-preserving; cannot build SFT pairs"
                )
            pairs.append((before, full[len(before) :].rstrip("\n")))
            if q is None:
                break
            result = getattr(env, msg["tool_calls"][0]["function"]["name"])(q)
            msgs += [msg, {"role": "tool", "name": name, "content": result}]
    return pairs


def warm_start_sft(
    pairs: Any,
    cache_dir: str | os.PathLike,
    *,
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    arch: str = "qwen2",
    model_kwargs: dict[str, Any] | None = None,
    tokenizer_kwargs: dict[str, Any] | None = None,
    tokenizer: Any = None,
) -> Path:
    """Train (or load from ``cache_dir``) a tiny causal LM on ``pairs``; returns its directory.

    Uses :func:`papercore.testing.train_tiny_lm` (loss on the target tokens + EOS only; cached
    under a hash of the pairs and settings). ``tokenizer_kwargs`` go to
    :func:`papercore.testing.build_causal_tokenizer` (e.g. a chat template, extra corpus texts);
    ``tokenizer`` is a ready one instead (e.g. papercore's word-level tokenizer, with which tiny
    models learn to copy values much faster than with BPE).
    """
    from papercore.testing.training import TrainSettings, train_tiny_lm

    task = TrajectorySFTTask(tuple((str(p), str(t)) for p, t in pairs))
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    return train_tiny_lm(
        task,
        cache_dir=cache_dir,
        settings=settings,
        arch=arch,
        model_kwargs=model_kwargs,
        tokenizer_kwargs=tokenizer_kwargs,
        tokenizer=tokenizer,
    )
