"""Loading models and tokenizers from a local path or the Hugging Face cache, offline first.

``load_model("path/or/name")`` tries, in order: a local directory; the local Hugging Face cache
(``local_files_only=True``); and only when downloads are allowed (``allow_download=True`` and
``HF_HUB_OFFLINE`` is not set) the hub. When none of these works the error says which places were
tried and how to fix it, instead of surfacing a network traceback.

A name that can only be a local path and does not exist raises :class:`ModelNotAvailableError`
at once: a ``Path`` object, or a string starting with ``./``, ``../``, ``/`` or ``~`` or with
more than one ``/``. A relative ``"a/b"`` whose first part ``a`` exists in the working directory
is looked up in the local cache only (never on the hub) before that error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch

from papercore.errors import ModelNotAvailableError

logger = logging.getLogger(__name__)

Task = Literal["causal-lm", "seq-cls", "encoder", "token-cls"]

_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """Map ``"bf16"``/``"float32"``/``"auto"``/a ``torch.dtype`` to what transformers accepts."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def offline_mode() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _auto_class(task: Task):
    import transformers

    classes = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq-cls": transformers.AutoModelForSequenceClassification,
        "token-cls": transformers.AutoModelForTokenClassification,
        "encoder": transformers.AutoModel,
    }
    try:
        return classes[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(classes)}") from None


def _from_pretrained(
    loader, name_or_path: str | os.PathLike[str], *, allow_download: bool, what: str, **kwargs
):
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(
                f"{what} path {str(path)!r} is a file; expected a model directory (with config.json)"
            )
        return loader(str(path), **kwargs)
    name = str(name_or_path)
    if _looks_like_path(name_or_path):
        raise ModelNotAvailableError(f"{what} directory {name!r} does not exist")
    local_root = _existing_first_component(name)
    try:
        return loader(name, local_files_only=True, **kwargs)
    except (OSError, ValueError) as local_err:
        if local_root is not None:
            raise ModelNotAvailableError(
                f"{what} directory {name!r} does not exist (and it is not in the local Hugging "
                f"Face cache). {local_root!r} exists in {Path.cwd()}, so {name!r} is taken for a "
                "local path and the hub was not contacted; fix the path, or run from another "
                "folder to load the hub model of that name"
            ) from local_err
        if not allow_download or offline_mode():
            why = (
                "downloads are disabled (HF_HUB_OFFLINE is set)"
                if offline_mode()
                else "allow_download=False"
            )
            raise ModelNotAvailableError(
                f"{what} {name!r} is not a local directory and is not in the local Hugging Face cache, and {why}. "
                f"Pass a local path, or download it first (e.g. `huggingface-cli download {name}`)."
            ) from local_err
    try:
        return loader(name, **kwargs)
    except Exception as e:  # network errors come in many types
        raise ModelNotAvailableError(
            f"{what} {name!r} is not available locally and could not be downloaded: {type(e).__name__}: {e}"
        ) from e


def _looks_like_path(name_or_path: str | os.PathLike[str]) -> bool:
    """A ``Path`` object, or a string that can only be a filesystem path (not a hub id ``org/name``):
    starting with ``.``, ``/``, ``~`` or a backslash, or with more than one separator."""
    if not isinstance(name_or_path, str):
        return True
    name = name_or_path
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or (os.sep != "/" and name.count(os.sep) > 1)
        or Path(name).is_absolute()
    )


def _existing_first_component(name: str) -> str | None:
    """``"models"`` for ``"models/my-model"`` when ``./models`` exists: a partly existing relative path."""
    parts = Path(name).parts
    if len(parts) > 1 and Path(parts[0]).exists():
        return parts[0]
    return None


def load_tokenizer(
    name_or_path: str | os.PathLike[str],
    *,
    allow_download: bool = True,
    padding_side: str | None = None,
    **kwargs: Any,
):
    """Load a tokenizer offline first (see module doc); sets a pad token (= eos) when it has none."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(
        AutoTokenizer.from_pretrained,
        name_or_path,
        allow_download=allow_download,
        what="tokenizer",
        **kwargs,
    )
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    if padding_side is not None:
        tok.padding_side = padding_side
    return tok


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    task: Task = "causal-lm",
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    allow_download: bool = True,
    eval_mode: bool = True,
    **kwargs: Any,
):
    """Load a transformers model for ``task`` offline first and move it to ``device``.

    Args:
        name_or_path: a local directory or a hub name.
        task: ``"causal-lm"`` | ``"seq-cls"`` | ``"token-cls"`` | ``"encoder"``.
        dtype: ``"auto"``, ``"bf16"``, ``"float32"``… or a ``torch.dtype``.
        device: ``None``/``"auto"`` picks CUDA when available.
        attn_implementation: e.g. ``"eager"`` when a method needs attention weights.
        allow_download: try the hub when the model is not local (never when ``HF_HUB_OFFLINE`` is set).
    """
    cls = _auto_class(task)
    torch_dtype = resolve_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = _from_pretrained(
        cls.from_pretrained, name_or_path, allow_download=allow_download, what="model", **kwargs
    )
    model.to(resolve_device(device))
    if eval_mode:
        model.eval()
    return model


def load_sentence_transformer(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    allow_download: bool = True,
    **kwargs: Any,
):
    """Load a ``SentenceTransformer`` offline first, like :func:`load_model` (needs ``sentence-transformers``).

    A plain transformers encoder directory gets sentence-transformers' default mean pooling.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        from papercore.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "loading a sentence-transformers model needs sentence-transformers: pip install sentence-transformers"
        ) from e
    return _from_pretrained(
        SentenceTransformer,
        name_or_path,
        allow_download=allow_download,
        what="sentence-transformers model",
        device=str(resolve_device(device)),
        **kwargs,
    )
