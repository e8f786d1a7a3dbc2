"""Compress once, ask many — across processes: a compressed context saved to disk and loaded back.

``save_context(result, path, model)`` writes one ``.safetensors`` file holding the ragged per-layer
cache (keys and values of every layer at its own post-prefill length), the next-token logits after the
context, the kept positions (``PrefillResult.kept_indices``), the press's statistics, the position the
questions start at, and the identity of the model that produced it. ``load_context(path, model)`` checks
that identity and returns a :class:`~structkv.generation.PrefillResult` that
:func:`~structkv.generation.generate` answers from exactly as from the in-process one::

    res = prefill(model, context_ids, StructKVPress(compression_ratio=0.9))
    save_context(res, "report.skv.safetensors", model)
    # later, in another process
    res = load_context("report.skv.safetensors", model)
    answer = generate(model, res, question_ids, max_new_tokens=32)

Model identity = a SHA-256 of the architecture config (``config.to_dict()`` without runtime fields such as
``_name_or_path``, the attention implementation, ``dtype``, ``use_cache``) and a SHA-256 of a fixed sample
of the weights (embedding, last layer's key projection, LM head), rounded to bfloat16 so the same weights
loaded in float32 or bfloat16 agree. The cache dtype must equal the model's dtype. A loaded context into a
different model, a different dtype, or a file that is not a structkv context raises
:class:`~structkv.errors.PersistError`; an existing file is never overwritten without ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from structkv._compat import base_model, get_layer_kv
from structkv.errors import PersistError
from structkv.generation import PrefillResult

logger = logging.getLogger(__name__)

FORMAT = "structkv-context"
VERSION = 1
_RUNTIME_KEYS = {
    "_name_or_path",
    "_commit_hash",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "architectures",
}
_WEIGHT_SAMPLE = 4096


def _config_dict(model: torch.nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise PersistError(f"{type(model).__name__} has no .config: cannot identify the model")
    d = cfg.to_dict()
    return {k: v for k, v in sorted(d.items()) if k not in _RUNTIME_KEYS and not k.startswith("_")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weight_sample(p: torch.Tensor) -> bytes:
    flat = p.detach().reshape(-1)
    step = max(1, flat.numel() // _WEIGHT_SAMPLE)
    sample = flat[::step][:_WEIGHT_SAMPLE].to(torch.bfloat16).float().cpu()
    return sample.numpy().tobytes()


def model_identity(model: torch.nn.Module) -> dict[str, Any]:
    """``{"class", "name_or_path", "config_sha256", "weights_sha256", "n_layers", "dtype", "config"}``."""
    base = base_model(model)
    cfg = _config_dict(model)
    parts = [base.layers[-1].self_attn.k_proj.weight]
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        parts.insert(0, emb.weight)
    head = getattr(model, "lm_head", None)
    if head is not None:
        parts.append(head.weight)
    weights = _sha(b"".join(_weight_sample(p) for p in parts))
    return {
        "class": type(model).__name__,
        "name_or_path": str(getattr(model.config, "_name_or_path", "") or ""),
        "config_sha256": _sha(json.dumps(cfg, sort_keys=True, default=str).encode()),
        "weights_sha256": weights,
        "n_layers": len(base.layers),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "config": json.loads(json.dumps(cfg, default=str)),
    }


def _json_safe(value: Any) -> Any:
    """JSON-serialisable copy of a stats value; small tensors become lists, other objects are dropped."""
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 65536 else None
    if isinstance(value, dict):
        return {
            str(k): v for k, v in ((k, _json_safe(v)) for k, v in value.items()) if v is not None
        }
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    logger.debug("save_context: dropping a stats value of type %s", type(value).__name__)
    return None


def save_context(
    result: PrefillResult,
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    overwrite: bool = False,
) -> Path:
    """Write ``result`` (from :func:`~structkv.generation.prefill` on ``model``) to ``path``.

    The cache is saved at its post-prefill lengths (answers of earlier questions are not saved).

    Raises:
        PersistError: ``path`` exists and ``overwrite`` is False, or ``result`` does not fit ``model``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise PersistError(
            f"{str(path)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    ident = model_identity(model)
    if len(result.cache_lengths) != ident["n_layers"]:
        raise PersistError(
            f"the result has {len(result.cache_lengths)} layers but the model has {ident['n_layers']}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for i, n in enumerate(result.cache_lengths):
        k, v = get_layer_kv(result.cache, i)
        tensors[f"layer.{i}.keys"] = k[:, :, :n].contiguous().cpu()
        tensors[f"layer.{i}.values"] = v[:, :, :n].contiguous().cpu()
    tensors["last_logits"] = result.last_logits.contiguous().cpu()
    kept_keys = []
    for key, idx in result.kept_indices.items():
        if isinstance(idx, torch.Tensor):
            tensors[f"kept.{key}"] = idx.contiguous().cpu()
            kept_keys.append(str(key))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": ident,
        "context_length": int(result.context_length),
        "cache_lengths": [int(n) for n in result.cache_lengths],
        "pivot_layer": result.pivot_layer,
        "kept_keys": kept_keys,
        "stats": _json_safe(result.stats),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"structkv": json.dumps(meta)})
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if another writer created `path` meanwhile
            except FileExistsError:
                raise PersistError(
                    f"{str(path)!r} already exists; pass overwrite=True to replace it"
                ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("saved a compressed context (%d layers) to %s", len(result.cache_lengths), path)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a saved context (model identity, lengths, stats), without its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PersistError(f"no saved context at {str(path)!r} (expected a file from save_context)")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("structkv")
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise PersistError(
            f"{str(path)!r} is not a safetensors file written by save_context: {exc}"
        ) from exc
    if raw is None:
        raise PersistError(f"{str(path)!r} is a safetensors file but not a structkv context")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PersistError(
            f"{str(path)!r}: expected format {FORMAT!r} version {VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    return meta


def _check_identity(saved: dict, mine: dict, path: Path) -> None:
    if saved["config_sha256"] != mine["config_sha256"]:
        a, b = saved["config"], mine["config"]
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        shown = ", ".join(f"{k}: saved {a.get(k)!r} vs model {b.get(k)!r}" for k in diff[:5])
        raise PersistError(
            f"{str(path)!r} was compressed by a different model ({saved['class']} "
            f"{saved['name_or_path']!r}); the configs differ in {len(diff)} field(s): {shown}"
        )
    if saved["weights_sha256"] != mine["weights_sha256"]:
        raise PersistError(
            f"{str(path)!r} was compressed by a model with the same config but different weights "
            f"(saved from {saved['name_or_path']!r}, this model is {mine['name_or_path']!r})"
        )
    if saved["dtype"] != mine["dtype"]:
        raise PersistError(
            f"{str(path)!r} holds a {saved['dtype']} cache but the model runs in {mine['dtype']}; "
            f"load the model with dtype={saved['dtype']}"
        )


def load_context(
    path: str | os.PathLike[str], model: torch.nn.Module, device: str | torch.device | None = None
) -> PrefillResult:
    """A :class:`PrefillResult` from a file written by :func:`save_context`, on ``model``'s device.

    Raises:
        PersistError: no such file, not a structkv context, or saved from a different model or dtype.
    """
    from safetensors.torch import load_file
    from transformers import DynamicCache

    path = Path(path)
    meta = read_metadata(path)
    _check_identity(meta["model"], model_identity(model), path)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    tensors = load_file(str(path), device=str(dev))
    cache = DynamicCache()
    for i, n in enumerate(meta["cache_lengths"]):
        k, v = tensors[f"layer.{i}.keys"], tensors[f"layer.{i}.values"]
        if k.shape[2] != n:
            raise PersistError(f"{str(path)!r}: layer {i} holds {k.shape[2]} entries, expected {n}")
        cache.update(k, v, i)
    kept = {}
    for key in meta["kept_keys"]:
        kept[int(key) if key.lstrip("-").isdigit() else key] = tensors[f"kept.{key}"]
    return PrefillResult(
        cache=cache,
        context_length=meta["context_length"],
        cache_lengths=list(meta["cache_lengths"]),
        last_logits=tensors["last_logits"],
        kept_indices=kept,
        pivot_layer=meta["pivot_layer"],
        stats=meta["stats"],
    )
