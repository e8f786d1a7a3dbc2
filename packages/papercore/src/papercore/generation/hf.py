"""Sampling with transformers ``generate`` (the reference backend, and the oracle for the others).

Batching never changes a completion:

* **Ends.** Each row is cut at its own end: the first stop string (``SamplingConfig.stop``; no
  EOS appended) or the first EOS (kept as the last id), whichever comes first; otherwise it ran to
  ``max_new_tokens``. The padding ``generate`` writes after a finished row (``pad_token_id``,
  often the EOS id itself) is never part of ``token_ids`` or ``logprobs``.
* **Randomness.** With sampling, every sequence draws from its own random stream, seeded by
  ``(SamplingConfig.seed, prompt index in the call, sample index)``; the token choice is made by
  :class:`_RowSampler` (transformers' own temperature / top-k / top-p warpers, then one uniform
  draw per step from the row's stream) and ``generate`` runs with ``do_sample=False``. So samples
  do not depend on ``batch_size`` or on the other prompts of the call (up to floating-point
  differences of left-padded batches), and the caller's torch RNG is not touched when a seed is
  given. With ``seed=None`` one base seed is drawn from torch's global RNG per call, so
  :func:`papercore.seeding.seed_everything` still makes runs reproducible.

Per-prompt configs: ``generate(prompts, configs=[...])`` groups the prompts by identical
:class:`SamplingConfig` and runs each group in its own batches (in the order the configs first
appear); the output keeps the prompts' order. A prompt keeps its index in the call for its random
stream, so prompt ``i`` of a mixed call gets the same samples as prompt ``i`` of
``generate(prompts, configs[i])`` (and a prompt alone, at index 0, the same as at index 0 of a
mixed call). With ``seed=None`` each distinct config draws its own base seed.

LoRA adapters (peft): ``generate(prompts, config, adapters=[name or None, ...])`` runs one batch
with a different adapter per prompt through peft's mixed-adapter inference
(``model.generate(..., adapter_names=[...])``, one name per expanded row, ``"__base__"`` for the
base model). The adapters' weights are applied per row, so a mixed batch gives the same tokens
as one run per adapter. ``set_adapter`` is never called: the model's active adapter is not
changed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from papercore.errors import BackendUnavailableError, ModelNotAvailableError
from papercore.generation.base import (
    AdapterError,
    Completion,
    Prompt,
    SamplingConfig,
    check_adapters,
    check_prompts,
    cut_at_stop,
    encode_prompt,
    resolve_configs,
)

logger = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"
"""peft's name for "no adapter" in a mixed-adapter batch (``adapter_names``)."""


class TransformersBackend:
    """Batched sampling from a loaded transformers causal LM.

    Args:
        model: a ``PreTrainedModel`` with a generation head (or a path / name, loaded offline
            first), or a peft ``PeftModel`` wrapping one.
        tokenizer: its tokenizer (loaded from ``model`` when ``None`` and ``model`` is a path).
        batch_size: prompts per ``generate`` call (each expands to ``n`` sequences); it does not
            change the completions (see the module doc), only speed and memory.
        adapters: LoRA adapters to load with peft (``papercore[peft]``), ``{name: local adapter
            directory}`` (a ``save_pretrained`` output with ``adapter_config.json``). A plain model
            is wrapped in a ``PeftModel`` (``self.model``) and ``generate`` without ``adapters``
            then runs the base model; on a ``PeftModel`` they are added to its adapters.

    ``generate(..., adapters=[...])`` picks an adapter per prompt (see the module doc). Without
    ``adapters`` a ``PeftModel`` passed in runs as peft runs it (its active adapter). Calls of
    ``generate`` on one ``PeftModel`` are serialised by a per-model lock: peft passes
    ``adapter_names`` through hooks registered on the shared modules, so two threads generating
    at once would see each other's adapter lists.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        adapters: Mapping[str, str | os.PathLike[str]] | None = None,
    ):
        from papercore.models import load_model, load_tokenizer

        if isinstance(model, str):
            tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
            model = load_model(model, device=device, dtype=dtype)
        if tokenizer is None:
            raise ValueError("TransformersBackend needs a tokenizer when given a model object")
        # adapter_names entry of a call without ``adapters``: None = the model as peft runs it
        self._default_adapter: str | None = None
        if adapters:
            wrapped = not is_peft_model(model)
            model = load_lora_adapters(model, adapters)
            if wrapped:
                self._default_adapter = BASE_ADAPTER
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @property
    def adapter_names(self) -> list[str]:
        """Names of the adapters loaded on the model (empty for a model without peft adapters)."""
        return loaded_adapters(self.model)

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Prompt],
        config: SamplingConfig | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
        configs: Sequence[SamplingConfig] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``config.n`` completions per prompt.

        Args:
            prompts: strings or chat message lists.
            config: sampling settings (default ``SamplingConfig()``).
            adapters: one LoRA adapter name per prompt (``None`` = the base model), run in mixed
                batches; needs a ``PeftModel`` with those adapters loaded.
            configs: one :class:`SamplingConfig` per prompt instead of ``config`` (prompts with
                equal configs are batched together; see the module doc).

        Raises:
            SamplingConfigsError: both ``config`` and ``configs``, or a wrong-length ``configs``.
        """
        prompts = check_prompts(prompts)
        cfgs = resolve_configs(config, configs, len(prompts))
        rows = self._adapter_rows(check_adapters(adapters, len(prompts)), len(prompts))
        ids = [encode_prompt(p, self.tokenizer) for p in prompts]
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} has no tokens")
        groups: dict[SamplingConfig, list[int]] = {}
        for i, c in enumerate(cfgs):
            groups.setdefault(c, []).append(i)
        out: list[list[Completion]] = [[] for _ in prompts]
        for cfg, members in groups.items():
            base_seed = None if cfg.greedy else _base_seed(cfg.seed)
            for start in range(0, len(members), self.batch_size):
                idx = members[start : start + self.batch_size]
                names = None if rows is None else [rows[i] for i in idx]
                res = self._generate_batch([ids[i] for i in idx], cfg, base_seed, idx, names)
                for i, group in zip(idx, res, strict=True):
                    out[i] = group
        return out

    def _adapter_rows(self, adapters: list[str | None] | None, n_prompts: int) -> list[str] | None:
        """peft's ``adapter_names`` entry per prompt, or ``None`` to run the model as it is."""
        if adapters is None:
            if self._default_adapter is None:
                return None
            rows = [self._default_adapter] * n_prompts
        else:
            if not is_peft_model(self.model):
                raise AdapterError(
                    f"adapters were given but the model is a {type(self.model).__name__}, not a "
                    "peft PeftModel with adapters loaded; load them with "
                    "TransformersBackend(model, tokenizer, adapters={name: path, ...}) or with peft"
                )
            loaded = loaded_adapters(self.model)
            unknown = sorted({a for a in adapters if a is not None and a not in loaded})
            if unknown:
                raise AdapterError(
                    f"unknown adapter(s) {unknown}; the model has these adapters loaded: {loaded}"
                )
            rows = [BASE_ADAPTER if a is None else a for a in adapters]
        if self.model.training:
            raise AdapterError(
                "per-prompt adapters need the model in eval mode (peft refuses adapter_names in "
                "training mode); call model.eval() first"
            )
        return rows

    def _generate_batch(
        self,
        prompt_ids: list[list[int]],
        config: SamplingConfig,
        base_seed: int | None,
        indices: list[int],
        adapter_rows: list[str] | None = None,
    ) -> list[list[Completion]]:
        """One ``generate`` call; ``indices``: each prompt's index in the ``generate`` call (its
        random stream is seeded by ``(base_seed, index, sample)``)."""
        from transformers import LogitsProcessorList

        tok, model = self.tokenizer, self.model
        eos_ids = _eos_ids(model, tok)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        reps = 1 if config.greedy else config.n  # greedy: n identical samples, decoded once
        width = max(map(len, prompt_ids))
        device = next(model.parameters()).device
        input_ids = torch.tensor(
            [[pad_id] * (width - len(p)) + p for p in prompt_ids for _ in range(reps)],
            device=device,
        )
        attention_mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids for _ in range(reps)],
            device=device,
        )
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "return_dict_in_generate": True,
            "output_logits": config.logprobs,
            "pad_token_id": pad_id,
            "eos_token_id": eos_ids,
            # the token choice is greedy, or made by _RowSampler: never by generate's own sampler
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if config.stop:
            gen_kwargs.update(stop_strings=list(config.stop), tokenizer=tok)
        if base_seed is not None:
            rngs = [np.random.default_rng([base_seed, i, k]) for i in indices for k in range(reps)]
            gen_kwargs["logits_processor"] = LogitsProcessorList([_RowSampler(rngs, config)])
        if adapter_rows is not None:
            # peft's mixed-adapter batch: one adapter name per row of input_ids
            gen_kwargs["adapter_names"] = [a for a in adapter_rows for _ in range(reps)]
        with _generate_lock(model):
            res = model.generate(input_ids=input_ids, attention_mask=attention_mask, **gen_kwargs)
        new = res.sequences[:, width:]
        logps = None
        if config.logprobs:
            # raw logits per step: [steps][B*n, V] -> log-softmax, pick the generated ids
            logits = torch.stack(res.logits, dim=1).float()  # [B*n, steps, V]
            logps = (
                torch.log_softmax(logits, dim=-1)
                .gather(-1, new[:, : logits.shape[1], None])
                .squeeze(-1)
                .tolist()
            )
        completions: list[Completion] = []
        for row, seq in enumerate(new.tolist()):
            ids, reason = _cut_row(seq, set(eos_ids), pad_id, config.stop, tok)
            body = ids[:-1] if reason == "eos" else ids
            text, hit = cut_at_stop(tok.decode(body, skip_special_tokens=True), config.stop)
            completions.append(
                Completion(
                    text=text,
                    token_ids=ids,
                    logprobs=None if logps is None else logps[row][: len(ids)],
                    finish_reason="stop" if hit or reason != "length" else "length",
                )
            )
        if config.greedy:
            return [[copy.deepcopy(c) for _ in range(config.n)] for c in completions]
        n = config.n
        return [completions[i * n : (i + 1) * n] for i in range(len(prompt_ids))]


class _RowSampler:
    """A logits processor that samples each row's next token from the row's own random stream.

    The row's logits go through transformers' ``TemperatureLogitsWarper``, ``TopKLogitsWarper``
    and ``TopPLogitsWarper`` (what ``generate(do_sample=True)`` applies), then one uniform draw
    from the row's ``numpy`` generator picks a token by inverse CDF. Returns scores that are 0 at
    the chosen token and -inf elsewhere, so ``generate``'s greedy step takes exactly that token.
    """

    def __init__(self, rngs: list[np.random.Generator], config: SamplingConfig):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.rngs = rngs
        self.warpers: list[Any] = []
        if config.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k=config.top_k))
        if config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=config.top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.rngs):
            raise RuntimeError(f"expected {len(self.rngs)} rows of scores, got {scores.shape[0]}")
        warped = scores.float()
        for w in self.warpers:
            warped = w(input_ids, warped)
        probs = torch.softmax(warped, dim=-1).double()
        cdf = probs.cumsum(dim=-1)
        u = torch.tensor([g.random() for g in self.rngs], dtype=torch.float64, device=cdf.device)
        choice = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)
        choice = choice.clamp_(max=probs.shape[-1] - 1)
        # rounding at the very top of the CDF may land on a zero-probability token: take the mode
        zero = probs.gather(-1, choice) == 0
        if bool(zero.any()):
            choice = torch.where(zero, probs.argmax(dim=-1, keepdim=True), choice)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, choice, 0.0)


def import_peft() -> Any:
    """Import peft or raise :class:`BackendUnavailableError` with the install command."""
    try:
        import peft
    except ImportError as e:
        raise BackendUnavailableError(
            "LoRA adapters in the transformers backend need peft, which is not installed: "
            "pip install 'papercore[peft]'"
        ) from e
    return peft


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is a peft ``PeftModel`` (without importing peft when it is not loaded)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def loaded_adapters(model: Any) -> list[str]:
    """The adapter names loaded on a ``PeftModel`` (``[]`` for any other model)."""
    return list(model.peft_config) if is_peft_model(model) else []


def load_lora_adapters(model: Any, adapters: Mapping[str, str | os.PathLike[str]]) -> Any:
    """Load LoRA adapters from local directories onto ``model`` with peft, returning a ``PeftModel``.

    A plain model is wrapped (``PeftModel.from_pretrained`` with the first adapter, then
    ``load_adapter`` for the rest; peft injects the LoRA layers into the model's modules, so the
    plain model object is changed in place); a ``PeftModel`` gets the adapters added. The model is
    left in eval mode. Adapter directories are local only: a missing one raises
    :class:`~papercore.errors.ModelNotAvailableError`, never a hub lookup.
    """
    if not isinstance(adapters, Mapping):
        raise AdapterError(
            f"adapters must be a mapping {{name: adapter directory}}, got {type(adapters).__name__}"
        )
    peft = import_peft()
    present = loaded_adapters(model)
    for name, path in adapters.items():
        if not isinstance(name, str) or not name or name == BASE_ADAPTER:
            raise AdapterError(
                f"adapter names must be non-empty strings other than {BASE_ADAPTER!r}, got {name!r}"
            )
        if name in present:
            raise AdapterError(f"adapter {name!r} is already loaded on the model ({present})")
        _check_adapter_dir(name, path)
    for name, path in adapters.items():
        if is_peft_model(model):
            model.load_adapter(str(Path(path).expanduser()), adapter_name=name)
        else:
            model = peft.PeftModel.from_pretrained(
                model, str(Path(path).expanduser()), adapter_name=name
            )
        logger.info("loaded LoRA adapter %r from %s", name, path)
    return model.eval()


def _check_adapter_dir(name: str, path: str | os.PathLike[str]) -> Path:
    """An adapter directory must exist locally and hold ``adapter_config.json``."""
    if not isinstance(path, (str, os.PathLike)):
        raise AdapterError(
            f"adapter {name!r}: expected a directory path, got {type(path).__name__}"
        )
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelNotAvailableError(
            f"adapter {name!r}: directory {str(p)!r} does not exist (adapters load from local "
            "directories written by peft's save_pretrained)"
        )
    if not (p / "adapter_config.json").is_file():
        raise ModelNotAvailableError(
            f"adapter {name!r}: {str(p)!r} has no adapter_config.json; expected a peft adapter "
            "directory (save_pretrained output)"
        )
    return p


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _generate_lock(model: Any) -> Any:
    """A lock per ``PeftModel`` (peft's adapter_names hooks are shared module state); no-op otherwise."""
    if not is_peft_model(model):
        return contextlib.nullcontext()
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
    return lock


def _base_seed(seed: int | None) -> int:
    """The call's base seed: ``seed`` itself, or one draw from torch's global RNG when ``None``."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return seed % 2**64  # numpy seeds are non-negative


def _cut_row(
    seq: list[int], eos_set: set[int], pad_id: int, stop: Sequence[str], tok: Any
) -> tuple[list[int], str]:
    """One generated row cut at its own end: (ids, "stop" | "eos" | "length").

    The end is the earliest of: the first token after which the decoded text contains a stop
    string ("stop", the ids end with that token); the first EOS ("eos", kept). Anything after it is
    ``generate``'s padding of a finished row (``pad_id``, possibly equal to an EOS id).
    """
    first_eos = next((j for j, t in enumerate(seq) if t in eos_set), None)
    end = len(seq) if first_eos is None else first_eos
    if first_eos is None and pad_id not in eos_set:
        # a row that stopped on a stop string we do not find in the text (a tokenizer quirk)
        while end and seq[end - 1] == pad_id:
            end -= 1
    if stop:
        j = _stop_end(seq[:end], stop, tok)
        if j is not None:
            return seq[:j], "stop"
    if first_eos is not None:
        return seq[: first_eos + 1], "eos"
    return seq[:end], "length"


def _stop_end(ids: list[int], stop: Sequence[str], tok: Any) -> int | None:
    """Smallest ``j`` such that ``decode(ids[:j])`` contains a stop string, or ``None``.

    transformers' ``StopStringCriteria`` stops once a stop string ends in the last token, so this is
    never later than where ``generate`` stopped the row. Binary search: O(log n) decodes.
    """

    def hit(j: int) -> bool:
        text = tok.decode(ids[:j], skip_special_tokens=False)
        return any(s and s in text for s in stop)

    if not ids or not hit(len(ids)):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tok.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer and model define no eos_token_id; set tokenizer.eos_token")
    return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
