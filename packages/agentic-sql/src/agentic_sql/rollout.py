"""Text-protocol multi-turn rollouts for TRL's ``rollout_func`` (SkyRL-SQL compatible; spec §2.1, §3.1).

Works with any tokenizer (no tool-calling chat template needed). Per turn the policy writes
``<think>...</think>`` (optional) and then either ``<sql>QUERY</sql>`` — executed; the environment
answers ``<observation>TABLE or ERROR</observation>`` — or ``<solution>QUERY</solution>``, which ends
the episode. Generation stops at ``</sql>`` / ``</solution>`` (stop strings) and goes through a
papercore generation backend (transformers; vLLM when installed and the trainer uses it).

The rollout returns, per completion, the token ids of every turn with the observation tokens
appended and masked out of the loss (``env_mask = 0``), plus the per-turn CSMR scores the
environment computed (``turn_scores``, ``turn_errors``, ``final_ex``, ...) as extra fields that
reach the reward functions, so :func:`~agentic_sql.rewards.atr_reward` never re-executes a query.
Each turn is parsed by :func:`agentic_sql.protocol.parse_turn`, the parser the rewards use, so a
turn the rewards would call malformed (nested openings, ``<think>`` inside a block, ...) is a
format failure here too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentic_sql.protocol import parse_completion, parse_turn

logger = logging.getLogger(__name__)

__all__ = [
    "EpisodeTrace",
    "make_sql_rollout_func",
    "observation_text",
    "run_text_episodes",
]

RolloutFunc = Callable[[list[Any], Any], dict[str, list[Any]]]

_FIRST_CLOSE = re.compile(r"</(sql|solution)>", re.IGNORECASE)


def observation_text(obs: str) -> str:
    """How an execution result is fed back in the text protocol."""
    return f"\n<observation>\n{obs}\n</observation>\n"


@dataclass
class EpisodeTrace:
    """One text-protocol episode: ids, loss mask, logprobs, text and the environment's scores."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    env: Any = None
    finished: bool = False


def run_text_episodes(
    generator: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    rows: Sequence[dict[str, Any]],
    env_factory: Callable[[], Any],
    *,
    max_turns: int = 5,
    stop: Sequence[str] = ("</sql>", "</solution>"),
    max_new_tokens_per_turn: int = 512,
    max_completion_length: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> list[EpisodeTrace]:
    """Play one text-protocol episode per prompt, batching every active episode's turn together.

    Args:
        generator: a papercore generation backend (``make_backend("transformers", ...)``).
        tokenizer: the policy's tokenizer (any; a chat template only if prompts are message lists).
        prompts: chat message lists or strings, one per episode.
        rows: the dataset rows (need ``db_id`` and ``gold_sql``), one per episode.
        env_factory: builds a :class:`~agentic_sql.env.SQLEnvironment`.
        max_completion_length: token budget over all turns (observations included).
        temperature: 0 = greedy.
    """
    from papercore.generation import SamplingConfig, encode_prompt, render_prompt

    if len(prompts) != len(rows):
        raise ValueError(f"got {len(prompts)} prompts but {len(rows)} rows; they must match")
    eos = tokenizer.eos_token_id
    traces: list[EpisodeTrace] = []
    prefixes: list[str] = []
    gold_cache = getattr(env_factory, "gold_cache", None)
    if gold_cache is not None and hasattr(gold_cache, "prerun"):
        # the batch's distinct gold queries in parallel (reset then finds them cached)
        gold_cache.prerun(
            [(r["db_id"], r["gold_sql"]) for r in rows if "db_id" in r and "gold_sql" in r],
            pin=False,
        )
    for prompt, row in zip(prompts, rows, strict=True):
        env = env_factory()
        env.reset(**row)
        text = render_prompt(prompt, tokenizer)
        prefixes.append(text)
        ids = encode_prompt(text, tokenizer)  # the ids the backend sees for this text
        traces.append(EpisodeTrace(prompt_ids=list(ids), env=env))
    budget = max_completion_length or 10**9
    for turn in range(max_turns):
        active = [i for i, t in enumerate(traces) if not t.finished]
        if not active:
            break
        room = min(budget - len(traces[i].completion_ids) for i in active)
        cfg = SamplingConfig(
            n=1,
            max_new_tokens=max(1, min(max_new_tokens_per_turn, room)),
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=None if seed is None else seed + 1000 * turn,
            stop=tuple(stop),
            logprobs=True,
        )
        outs = generator.generate([prefixes[i] + traces[i].text for i in active], cfg)
        actions = [
            (i, _read_turn(traces[i], out[0], tokenizer, eos))
            for i, out in zip(active, outs, strict=True)
        ]
        _act(traces, actions, tokenizer, eos, last_turn=turn == max_turns - 1)
        for i in active:
            left = budget - len(traces[i].completion_ids)
            if left <= 0:
                traces[i].finished = True
    for t in traces:
        if max_completion_length is not None and len(t.completion_ids) > max_completion_length:
            n = max_completion_length
            t.completion_ids, t.env_mask, t.logprobs = (
                t.completion_ids[:n],
                t.env_mask[:n],
                t.logprobs[:n],
            )
        if t.env.final_sql is None:
            reason = parse_completion(t.text).reason or "no <solution> block"
            t.env._mark_format_error(reason)
        t.finished = True
    return traces


def _read_turn(
    trace: EpisodeTrace, comp: Any, tokenizer: Any, eos: int | None
) -> tuple[str, str] | None:
    """Append one generated turn (model tokens) and return its action ``(kind, sql)``.

    ``None`` when the turn has no action (the episode ends) or a malformed block (a format failure,
    the episode ends).
    """
    ids = list(comp.token_ids or [])
    lps = [float(x) for x in (comp.logprobs or [])][: len(ids)]
    lps += [0.0] * (len(ids) - len(lps))
    ended_eos = bool(ids) and eos is not None and ids[-1] == eos
    turn_text = tokenizer.decode(ids[:-1] if ended_eos else ids, skip_special_tokens=False)
    m = _FIRST_CLOSE.search(turn_text)
    if m is not None and ended_eos:
        # generation stops at the closing tag (stop string), so an EOS after it is batch padding
        # (pad = eos for many tokenizers), not a model token
        ids, lps, ended_eos = ids[:-1], lps[:-1], False
    trace.completion_ids += ids
    trace.env_mask += [1] * len(ids)
    trace.logprobs += lps
    trace.text += turn_text
    env = trace.env
    if m is None:
        trace.finished = True  # no action: the episode ends (no answer -> format failure)
        return None
    turn_part = turn_text[: m.end()]
    if turn_text[m.end() :].strip():
        env._mark_format_error("text after the closing tag")
    parsed = parse_turn(turn_part)
    if parsed is None:
        env._mark_format_error(f"malformed <{m.group(1).lower()}> block")
        trace.finished = True
        return None
    return parsed


def _act(
    traces: list[EpisodeTrace],
    actions: list[tuple[int, tuple[str, str] | None]],
    tokenizer: Any,
    eos: int | None,
    last_turn: bool,
) -> None:
    """Run every episode's action of this turn: all queries in one ``execute_many`` per executor
    (the worker-process pool runs them in parallel), then feed each result to its environment."""
    results = _execute_batch(
        [(traces[i].env, a[1]) for i, a in actions if a is not None and traces[i].env is not None]
    )
    for i, action in actions:
        if action is None:
            continue
        trace, (kind, sql) = traces[i], action
        env = trace.env
        res = results.get((id(env), sql))
        if kind == "solution":
            env._submit_answer(sql, res) if hasattr(env, "_submit_answer") else env.submit_answer(
                sql
            )
        else:
            obs = (
                env._execute_sql(sql, res) if hasattr(env, "_execute_sql") else env.execute_sql(sql)
            )
            if not (env.done or last_turn):
                text = observation_text(obs)
                _append_env(trace, tokenizer(text, add_special_tokens=False)["input_ids"], text)
                continue
        trace.finished = True
        if eos is not None:  # terminate the sequence (an environment token, not trained)
            _append_env(trace, [eos], "")


def _execute_batch(items: list[tuple[Any, str]]) -> dict[tuple[int, str], Any]:
    """``{(id(env), sql): result}`` for the queries the environments will execute this turn."""
    groups: dict[int, tuple[Any, list[tuple[Any, str]]]] = {}
    for env, sql in items:
        wants = getattr(env, "_wants_execution", None)
        ex = getattr(env, "executor", None)
        if wants is None or not wants() or ex is None or not hasattr(ex, "execute_many"):
            continue  # a duck-typed environment executes its own query
        if not sql or not sql.strip():
            continue
        groups.setdefault(id(ex), (ex, []))[1].append((env, sql))
    out: dict[tuple[int, str], Any] = {}
    for ex, pairs in groups.values():
        res = ex.execute_many([(env.db_id, sql) for env, sql in pairs])
        for (env, sql), r in zip(pairs, res, strict=True):
            out[(id(env), sql)] = r
    return out


def _append_env(trace: EpisodeTrace, ids: list[int], text: str) -> None:
    trace.completion_ids += ids
    trace.env_mask += [0] * len(ids)
    trace.logprobs += [0.0] * len(ids)
    trace.text += text


def make_sql_rollout_func(
    env_factory: Callable[[], Any],
    *,
    max_turns: int = 5,
    stop: Sequence[str] = ("</sql>", "</solution>"),
    max_new_tokens_per_turn: int = 512,
    backend: Literal["auto", "hf", "vllm"] = "auto",
    generator: Any = None,
    rows: Sequence[dict[str, Any]] | None = None,
    hf_batch_size: int = 64,
) -> RolloutFunc:
    """A TRL ``rollout_func(prompts, trainer)`` playing text-protocol SQL episodes.

    TRL passes only the prompts (already repeated ``num_generations`` times), so each prompt is
    matched to its dataset row (``db_id``, ``gold_sql``) through an index of the trainer's train and
    eval datasets keyed by the prompt (or through ``rows`` when given). Two rows with the same
    prompt and different ``db_id`` / ``gold_sql`` raise ``ValueError`` when the index is built.

    Args:
        env_factory: from :func:`~agentic_sql.env.make_environment_factory`.
        max_turns: turns per episode (exploratory + final).
        max_new_tokens_per_turn: generation cap per turn; the trainer's ``max_completion_length``
            caps the whole episode.
        backend: ``"hf"`` (papercore transformers backend on the trainer's model), ``"vllm"`` (the
            trainer's colocated vLLM engine through papercore's vLLM adapter) or ``"auto"``
            (vLLM when the trainer uses it).
        generator: an explicit papercore backend (overrides ``backend``).
        rows: dataset rows to index instead of the trainer's datasets.
        hf_batch_size: prompts per ``generate`` call of the transformers backend (``backend="hf"``).

    Returns:
        ``rollout_func`` returning ``prompt_ids``, ``completion_ids``, ``logprobs``, ``env_mask``,
        ``turn_scores``, ``turn_errors``, ``final_sql``, ``final_ex``, ``final_ok``, ``final_score``,
        ``format_ok``, ``gold_valid``, ``n_turns``.
    """
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend must be 'auto', 'hf' or 'vllm', got {backend!r}")
    if int(hf_batch_size) < 1:
        raise ValueError(f"hf_batch_size must be >= 1, got {hf_batch_size}")
    state: dict[str, Any] = {"index": _index_rows(rows) if rows is not None else None}

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        if state["index"] is None:
            state["index"] = _index_trainer_rows(trainer)
        batch_rows = [_lookup(state["index"], p) for p in prompts]
        gen = generator or _trainer_backend(trainer, backend, hf_batch_size)
        args = trainer.args
        tok = trainer.processing_class
        tok = getattr(tok, "tokenizer", tok)
        model = _unwrap(trainer)
        was_training = model.training
        model.eval()
        try:
            traces = run_text_episodes(
                gen,
                tok,
                prompts,
                batch_rows,
                env_factory,
                max_turns=max_turns,
                stop=stop,
                max_new_tokens_per_turn=max_new_tokens_per_turn,
                max_completion_length=args.max_completion_length,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k or 0,
            )
        finally:
            model.train(was_training)
        return traces_to_rollout(traces)

    return rollout_func


def traces_to_rollout(traces: Sequence[EpisodeTrace]) -> dict[str, list[Any]]:
    """The ``rollout_func`` output dict for a batch of episodes."""
    envs = [t.env for t in traces]
    return {
        "prompt_ids": [t.prompt_ids for t in traces],
        "completion_ids": [t.completion_ids for t in traces],
        "logprobs": [t.logprobs for t in traces],
        "env_mask": [t.env_mask for t in traces],
        "turn_scores": [list(e.turn_scores) for e in envs],
        "turn_errors": [list(e.turn_errors) for e in envs],
        "final_sql": [e.final_sql for e in envs],
        "final_ex": [bool(e.final_ex) for e in envs],
        "final_ok": [bool(e.final_ok) for e in envs],
        "final_score": [float(e.final_score) for e in envs],
        "format_ok": [bool(e.format_ok) for e in envs],
        "gold_valid": [bool(e.gold_valid) for e in envs],
        "n_turns": [int(e.n_turns) for e in envs],
    }


def _prompt_key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)


def _index_rows(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by prompt. TRL hands ``rollout_func`` only the prompts, so a prompt must name one task:
    two rows with the same prompt but a different ``db_id`` / ``gold_sql`` raise ``ValueError``
    (exact duplicates, e.g. a row in both the train and the eval set, are fine)."""
    index: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        missing = [k for k in ("prompt", "db_id", "gold_sql") if k not in row]
        if missing:
            raise ValueError(
                f"dataset rows need the columns prompt, db_id and gold_sql; missing {missing}"
            )
        key = _prompt_key(row["prompt"])
        first = index.setdefault(key, dict(row))
        if (first["db_id"], first["gold_sql"]) != (row["db_id"], row["gold_sql"]):
            raise ValueError(
                f"two dataset rows have the same prompt but different tasks "
                f"({first['db_id']!r}: {first['gold_sql']!r} vs row {i}, {row['db_id']!r}: "
                f"{row['gold_sql']!r}); the text-protocol rollout matches rows by prompt, so make the "
                f"prompts distinct (e.g. include the evidence or db id) or drop one of the rows. "
                f"Prompt: {_short(key)}"
            )
    return index


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _index_trainer_rows(trainer: Any) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for ds in (getattr(trainer, "train_dataset", None), getattr(trainer, "eval_dataset", None)):
        if ds is None:
            continue
        for d in ds.values() if isinstance(ds, dict) else [ds]:
            rows.extend(d)
    return _index_rows(rows)


def _lookup(index: dict[str, dict[str, Any]], prompt: Any) -> dict[str, Any]:
    try:
        return index[_prompt_key(prompt)]
    except KeyError:
        raise ValueError(
            "a prompt passed to the SQL rollout is not in the trainer's datasets, so its db_id/gold_sql "
            "are unknown; pass rows=... to make_sql_rollout_func"
        ) from None


def _unwrap(trainer: Any) -> Any:
    acc = getattr(trainer, "accelerator", None)
    return acc.unwrap_model(trainer.model) if acc is not None else trainer.model


def _trainer_backend(trainer: Any, backend: str, hf_batch_size: int = 64) -> Any:
    from papercore.generation import make_backend

    use_vllm = bool(getattr(trainer, "use_vllm", False))
    if backend == "vllm" or (backend == "auto" and use_vllm):
        vgen = getattr(trainer, "vllm_generation", None)
        llm = getattr(vgen, "llm", None)
        if llm is None:
            raise ValueError(
                "the text-protocol rollout drives vLLM in colocate mode only "
                "(GRPOConfig(use_vllm=True, vllm_mode='colocate')); for server mode use protocol='tools'"
            )
        return make_backend("vllm", model=llm)
    tok = trainer.processing_class
    return make_backend(
        "transformers",
        model=_unwrap(trainer),
        tokenizer=getattr(tok, "tokenizer", tok),
        batch_size=int(hf_batch_size),
    )
