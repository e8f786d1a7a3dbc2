"""Side-branch models (spec §2.1, §2.4): one auxiliary text per (prompt, response) and dimension.

A :class:`SideBranchModel` is either

* a **LoRA adapter** on a shared base model (``SideBranchModel.lora(dim, backend, adapter)``): every LoRA
  branch of one backend is generated in **one mixed-adapter batch** (papercore's ``generate(prompts, config,
  adapters=[...])``: peft ``adapter_names`` in the transformers backend, one ``LoRARequest`` per prompt in the
  vLLM backend);
* a **full causal LM** with its own backend (``SideBranchModel(dim, model=..., tokenizer=...)``);
* any **callable** ``(prompt, response) -> str`` (``SideBranchModel(dim, generate_fn=...)``): retrieval, a
  rule, an API.

:func:`run_branches` runs a set of branches over a batch: cache lookup, one task per backend group or
callable in a thread pool, per-branch timeout (``UNAVAILABLE`` or, with ``strict=True``,
:class:`~srm_reward.errors.BranchUnavailableError`). Decoding is greedy by default, so outputs are cacheable.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srm_reward.cache import BranchCache, pair_hash
from srm_reward.dims import Dimension, check_unique, get_dimension
from srm_reward.errors import BranchUnavailableError, SRMConfigError
from srm_reward.render import UNAVAILABLE

logger = logging.getLogger(__name__)

__all__ = ["BranchRunStats", "SideBranchModel", "run_branches"]

BRANCH_FILE = "branch.json"


class SideBranchModel:
    """One side branch: a dimension plus the generator of its aux text.

    Args:
        dimension: a :class:`~srm_reward.dims.Dimension` or a default dimension's name.
        model: a causal LM (``PreTrainedModel``; with ``tokenizer``) for a full-model branch.
        tokenizer: its tokenizer.
        generate_fn: a callable ``(prompt, response) -> str`` instead of a model.
        backend: a papercore generation backend (shared by LoRA branches; see :meth:`lora`).
        adapter: the LoRA adapter name on ``backend`` (None = the backend's model as is).
        context_fn: optional ``(prompt, response) -> str`` whose text fills the template's ``{context}``
            (e.g. BM25 evidence) before generation.
        max_new_tokens: generation budget (default: the dimension's ``max_aux_tokens``).
        stop: stop strings for generation.
        temperature: 0 = greedy (the default; cacheable).
        fingerprint: identity of the generator for the cache (default: derived from weights or the callable's name).
    """

    def __init__(
        self,
        dimension: Dimension | str,
        model: Any = None,
        tokenizer: Any = None,
        generate_fn: Callable[[str, str], str] | None = None,
        *,
        backend: Any = None,
        adapter: str | None = None,
        context_fn: Callable[[str, str], str] | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        fingerprint: str | None = None,
    ) -> None:
        self.dimension = get_dimension(dimension)
        kinds = sum(x is not None for x in (model, generate_fn, backend))
        if kinds != 1:
            raise SRMConfigError(
                "SideBranchModel needs exactly one of model= (with tokenizer=), generate_fn= or backend=; "
                f"got model={model is not None}, generate_fn={generate_fn is not None}, backend={backend is not None}"
            )
        if generate_fn is not None and not callable(generate_fn):
            raise SRMConfigError(f"generate_fn must be callable, got {type(generate_fn).__name__}")
        if model is not None:
            if tokenizer is None:
                raise SRMConfigError("a model branch needs its tokenizer= too")
            from papercore.generation import make_backend

            backend = make_backend("transformers", model=model, tokenizer=tokenizer)
        self.backend = backend
        self.adapter = adapter
        self.generate_fn = generate_fn
        self.context_fn = context_fn
        self.max_new_tokens = max_new_tokens or self.dimension.max_aux_tokens
        self.stop = tuple(stop)
        self.temperature = temperature
        self._fingerprint = fingerprint

    @classmethod
    def lora(
        cls, dimension: Dimension | str, backend: Any, adapter: str, **kwargs: Any
    ) -> SideBranchModel:
        """A branch served by LoRA adapter ``adapter`` on a shared ``backend`` (one mixed batch per backend)."""
        return cls(dimension, backend=backend, adapter=adapter, **kwargs)

    @property
    def name(self) -> str:
        return self.dimension.name

    @property
    def kind(self) -> str:
        return "callable" if self.generate_fn is not None else ("lora" if self.adapter else "model")

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """A stable id of the generator: weights hash (LoRA: the adapter's weights only) or callable name."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps(self.dimension.to_dict(), sort_keys=True).encode())
            h.update(json.dumps([self.max_new_tokens, self.stop, self.temperature]).encode())
            if self.generate_fn is not None:
                fn = self.generate_fn
                h.update(
                    f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}".encode()
                )
                extra = getattr(fn, "fingerprint", None)
                if extra is not None:
                    h.update(str(extra).encode())
            elif (
                getattr(self.backend, "model", None) is None
            ):  # e.g. vLLM: identify by adapter directory
                paths = getattr(self.backend, "lora_adapters", {}) or {}
                h.update(
                    f"{getattr(self.backend, 'name', '?')}:{self.adapter}:{paths.get(self.adapter, '')}".encode()
                )
            else:
                model = self.backend.model
                for pname, p in sorted(model.state_dict().items()):
                    if (
                        self.adapter
                        and f".{self.adapter}." not in pname
                        and not pname.endswith(f".{self.adapter}")
                    ):
                        continue
                    h.update(pname.encode())
                    h.update(p.detach().float().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ------------------------------------------------------------------ generation
    def inputs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """The generator's input texts (template filled, context included)."""
        out = []
        for p, r in zip(prompts, responses, strict=True):
            ctx = self.context_fn(p, r) if self.context_fn is not None else ""
            out.append(
                self.dimension.format(p, r if self.dimension.depends_on_response else "", ctx)
            )
        return out

    def sampling_config(
        self, *, n: int = 1, temperature: float | None = None, seed: int | None = None
    ) -> Any:
        from papercore.generation import SamplingConfig

        t = self.temperature if temperature is None else temperature
        return SamplingConfig(
            n=n, max_new_tokens=self.max_new_tokens, temperature=t, seed=seed, stop=self.stop
        )

    def generate(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """One aux text per (prompt, response) (this branch alone; see :func:`run_branches` for a set)."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise SRMConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if self.generate_fn is not None:
            return [
                str(self.generate_fn(p, r)).strip() for p, r in zip(prompts, responses, strict=True)
            ]
        inputs = self.inputs(prompts, responses)
        adapters = None if self.adapter is None else [self.adapter] * len(inputs)
        outs = self.backend.generate(inputs, self.sampling_config(), adapters=adapters)
        return [o[0].text.strip() for o in outs]

    def sample(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        n: int,
        *,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> list[list[str]]:
        """``n`` sampled candidates per pair (Best-of-N); model branches only."""
        if self.generate_fn is not None:
            raise SRMConfigError("sample() needs a model branch; a callable branch has no sampling")
        inputs = self.inputs(prompts, responses)
        adapters = None if self.adapter is None else [self.adapter] * len(inputs)
        outs = self.backend.generate(
            inputs, self.sampling_config(n=n, temperature=temperature, seed=seed), adapters=adapters
        )
        return [[c.text.strip() for c in o] for o in outs]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the branch folder: ``branch.json`` + the adapter (LoRA) or the model and tokenizer.

        A LoRA branch saves only its own adapter (``adapter_config.json`` + weights); a callable branch
        cannot be saved (raises :class:`SRMConfigError`).
        """
        if self.generate_fn is not None:
            raise SRMConfigError(
                f"branch {self.name!r} is a callable: there are no weights to save"
            )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model, tok = self.backend.model, self.backend.tokenizer
        if self.adapter:
            tmp = path / "_peft"
            model.save_pretrained(str(tmp), selected_adapters=[self.adapter])
            src = tmp / self.adapter if (tmp / self.adapter).is_dir() else tmp
            for f in src.iterdir():
                if f.is_file():
                    f.replace(path / f.name)
            for f in sorted(tmp.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            tmp.rmdir()
        else:
            model.save_pretrained(str(path))
        tok.save_pretrained(str(path))
        meta = {
            "dimension": self.dimension.to_dict(),
            "kind": self.kind,
            "adapter": self.adapter,
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "temperature": self.temperature,
        }
        (path / BRANCH_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        base: Any = None,
        backend: Any = None,
        context_fn: Callable[[str, str], str] | None = None,
    ) -> SideBranchModel:
        """Load one branch folder. A LoRA branch loads onto ``backend`` (a shared papercore
        TransformersBackend: the adapter is added to it) or onto ``base`` (a model directory or model)."""
        path = Path(path)
        if not (path / BRANCH_FILE).is_file():
            raise SRMConfigError(
                f"{str(path)!r} is not a branch folder: expected {BRANCH_FILE} in it"
            )
        meta = json.loads((path / BRANCH_FILE).read_text())
        dim = Dimension(**meta["dimension"])
        kw = dict(
            max_new_tokens=meta["max_new_tokens"],
            stop=meta["stop"],
            temperature=meta["temperature"],
            context_fn=context_fn,
        )
        if meta["kind"] == "lora":
            from papercore.generation.hf import load_lora_adapters

            name = meta["adapter"]
            if backend is None:
                from papercore.generation import make_backend

                if base is None:
                    cfg = json.loads((path / "adapter_config.json").read_text())
                    base = cfg.get("base_model_name_or_path")
                if base is None:
                    raise SRMConfigError(
                        f"LoRA branch {str(path)!r} needs base= (the base model directory)"
                    )
                from papercore.models import load_model, load_tokenizer

                model = load_model(str(base)) if isinstance(base, (str, Path)) else base
                tok = load_tokenizer(str(path))
                backend = make_backend(
                    "transformers", model=model, tokenizer=tok, adapters={name: str(path)}
                )
            else:
                backend.model = load_lora_adapters(backend.model, {name: str(path)})
            return cls(dim, backend=backend, adapter=name, **kw)
        from papercore.models import load_model, load_tokenizer

        return cls(dim, model=load_model(str(path)), tokenizer=load_tokenizer(str(path)), **kw)


@dataclass
class BranchRunStats:
    """What :func:`run_branches` did: generated / cached / unavailable counts and wall time per group."""

    generated: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    decode_steps: int = 0


def _group_key(b: SideBranchModel) -> Any:
    return ("fn", b.name) if b.generate_fn is not None else ("backend", id(b.backend))


def _run_group(
    group: list[SideBranchModel],
    todo: dict[str, list[int]],
    prompts: list[str],
    responses: list[str],
) -> tuple[dict[str, list[str]], int]:
    """Generate the missing rows of one group: a callable, or every branch sharing one backend (one call,
    one adapter per prompt: a mixed-adapter batch)."""
    if group[0].generate_fn is not None:
        b = group[0]
        rows = todo[b.name]
        return {b.name: b.generate([prompts[i] for i in rows], [responses[i] for i in rows])}, 0
    inputs, adapters, owners = [], [], []
    for b in group:
        rows = todo[b.name]
        inputs += b.inputs([prompts[i] for i in rows], [responses[i] for i in rows])
        adapters += [b.adapter] * len(rows)
        owners += [b.name] * len(rows)
    if not inputs:
        return {b.name: [] for b in group}, 0
    base = group[0]
    configs = {(b.max_new_tokens, b.stop, b.temperature) for b in group}
    if len(configs) != 1:  # different budgets: one call per branch (still batched over rows)
        out = {
            b.name: b.generate(
                [prompts[i] for i in todo[b.name]], [responses[i] for i in todo[b.name]]
            )
            for b in group
        }
        return out, max(b.max_new_tokens for b in group)
    use = None if all(a is None for a in adapters) else adapters
    res = base.backend.generate(inputs, base.sampling_config(), adapters=use)
    out: dict[str, list[str]] = {b.name: [] for b in group}
    steps = 0
    for name, comp in zip(owners, res, strict=True):
        out[name].append(comp[0].text.strip())
        steps = max(steps, len(comp[0].token_ids or []))
    return out, steps


def run_branches(
    branches: Sequence[SideBranchModel],
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    cache: BranchCache | None = None,
    parallel: str = "thread",
    max_workers: int = 5,
    timeout_s: float | None = None,
    strict: bool = False,
    skip: Sequence[str] = (),
) -> tuple[dict[str, list[str]], BranchRunStats]:
    """Run every branch over ``(prompts[i], responses[i])``; returns ``{dim: [aux text per row]}`` and stats.

    Branches sharing a backend are generated together in one mixed-adapter batch; callables and backend
    groups run concurrently in a thread pool (``parallel="thread"``) or one after another (``"none"``).
    A group that raises or exceeds ``timeout_s`` yields ``UNAVAILABLE`` for its rows (logged), or raises
    :class:`BranchUnavailableError` when ``strict``. ``skip``: dimensions to leave out entirely.
    """
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise SRMConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if parallel not in ("thread", "none"):
        raise SRMConfigError(f"parallel must be 'thread' or 'none', got {parallel!r}")
    check_unique([b.name for b in branches], "branch")
    active = [b for b in branches if b.name not in set(skip)]
    stats = BranchRunStats()
    out: dict[str, list[str | None]] = {b.name: [None] * len(prompts) for b in active}
    todo: dict[str, list[int]] = {}
    keys: dict[str, list[str]] = {}
    for b in active:
        dep = b.dimension.depends_on_response
        keys[b.name] = [
            pair_hash(p, r if dep else None) for p, r in zip(prompts, responses, strict=True)
        ]
        rows, seen = [], {}
        for i, k in enumerate(keys[b.name]):
            hit = cache.get(b.name, b.fingerprint, k) if cache is not None else None
            if hit is not None:
                out[b.name][i] = hit
            elif k in seen:  # same input twice in the batch: generate once
                continue
            else:
                seen[k] = i
                rows.append(i)
        todo[b.name] = rows
        stats.cached[b.name] = sum(x is not None for x in out[b.name])
    groups: dict[Any, list[SideBranchModel]] = {}
    for b in active:
        if todo[b.name]:
            groups.setdefault(_group_key(b), []).append(b)

    def finish(
        group: list[SideBranchModel], result: dict[str, list[str]] | None, err: str | None
    ) -> None:
        for b in group:
            rows = todo[b.name]
            texts = result[b.name] if result is not None else [UNAVAILABLE] * len(rows)
            if result is None:
                stats.unavailable[b.name] = stats.unavailable.get(b.name, 0) + len(rows)
                logger.warning("branch %r unavailable for %d rows: %s", b.name, len(rows), err)
            stats.generated[b.name] = len(rows) if result is not None else 0
            by_key = {}
            for i, t in zip(rows, texts, strict=True):
                out[b.name][i] = t
                by_key[keys[b.name][i]] = t
                if result is not None and cache is not None:
                    cache.put(b.name, b.fingerprint, keys[b.name][i], t)
            for i, k in enumerate(keys[b.name]):  # duplicates within the batch
                if out[b.name][i] is None:
                    out[b.name][i] = by_key[k]

    def fail(group: list[SideBranchModel], why: str) -> None:
        names = [b.name for b in group]
        if strict:
            raise BranchUnavailableError(f"branch(es) {names} unavailable: {why} (strict=True)")
        finish(group, None, why)

    t0 = time.perf_counter()
    if parallel == "none":
        for group in groups.values():
            g0 = time.perf_counter()
            try:
                res, steps = _run_group(group, todo, prompts, responses)
            except Exception as e:
                fail(group, f"{type(e).__name__}: {e}")
                continue
            elapsed = time.perf_counter() - g0
            if timeout_s is not None and elapsed > timeout_s:
                fail(group, f"took {elapsed:.2f}s > timeout {timeout_s}s")
                continue
            stats.decode_steps = max(stats.decode_steps, steps)
            stats.latency_ms["/".join(b.name for b in group)] = 1000 * elapsed
            finish(group, res, None)
    else:
        pool = cf.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(groups) or 1)))
        try:
            futs = {
                gk: pool.submit(_run_group, g, todo, prompts, responses) for gk, g in groups.items()
            }
            for gk, fut in futs.items():
                group = groups[gk]
                remaining = (
                    None if timeout_s is None else max(0.0, timeout_s - (time.perf_counter() - t0))
                )
                try:
                    res, steps = fut.result(timeout=remaining)
                except cf.TimeoutError:
                    fail(group, f"timeout after {timeout_s}s")
                    continue
                except Exception as e:
                    fail(group, f"{type(e).__name__}: {e}")
                    continue
                stats.decode_steps = max(stats.decode_steps, steps)
                stats.latency_ms["/".join(b.name for b in group)] = 1000 * (
                    time.perf_counter() - t0
                )
                finish(group, res, None)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    stats.latency_ms["total"] = 1000 * (time.perf_counter() - t0)
    return {k: [t if t is not None else UNAVAILABLE for t in v] for k, v in out.items()}, stats
