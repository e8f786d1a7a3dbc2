"""Loading models and tokenizers from a local path or the Hugging Face cache, offline first.

``load_model("path/or/org/name")`` tries, in order: a local directory; the local Hugging Face cache
(``local_files_only=True``); and only when downloads are allowed (``allow_download=True`` and
``HF_HUB_OFFLINE`` is not set) and the name has the shape of a hub id ``org/name``, the hub. When
none of these works the error says which places were tried and how to fix it, instead of
surfacing a network traceback.

**A path given as a path is never a hub id.** A name that does not exist raises
:class:`ModelNotAvailableError` at once, before any network access, when it is

* a ``pathlib.Path`` (or any ``os.PathLike``): a CLI that declares its argument as a path passes
  the ``Path`` itself, not ``str(path)``;
* a string that can only be a path: starting with ``.``, ``/``, ``~`` or ``\\``, absolute, with
  a backslash, or with more than one ``/`` (``models/run1/final``);
* an ``"a/b"`` whose first part ``a`` exists in the working directory (looked up in the local
  cache only, never on the hub);
* a bare name without ``/`` (``"my-model"``) that is not in the local cache: the hub only serves
  ``org/name``.

Only a string of the form ``org/name`` may reach the hub, and only after those local checks.

Under ``accelerate launch`` / ``torchrun``, ``load_model(..., device=None)`` puts the model on this
rank's own device (:func:`local_device`), never ``cuda:0`` on every rank.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def distributed_launch() -> bool:
    """True under ``accelerate launch`` / ``torchrun`` / ``deepspeed``: ``LOCAL_RANK`` is set or
    ``WORLD_SIZE`` > 1 in the environment, or an ``accelerate.PartialState`` with more than one
    process is already initialised (a single-process state, which every ``Trainer`` creates, is not)."""
    if os.environ.get("LOCAL_RANK", "").strip() != "":
        return True
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return True
    except ValueError:
        pass
    state = sys.modules.get("accelerate.state")  # only if accelerate was imported already
    partial = getattr(state, "PartialState", None)
    shared = getattr(partial, "_shared_state", None)
    # an initialised single-process state (any `Trainer` creates one) is not a launch
    return bool(shared) and int(shared.get("num_processes", 1) or 1) > 1


def local_device() -> torch.device:
    """The device this process should put a model on.

    Under a distributed launch (:func:`distributed_launch`) it is this rank's own device,
    ``accelerate.PartialState().device`` (``cuda:<LOCAL_RANK>`` on a multi-GPU node, ``cpu`` on a
    CPU-only one); without accelerate installed, ``cuda:<LOCAL_RANK>`` when CUDA is available, else
    ``cpu``. Outside a launch it is :func:`resolve_device` ``(None)``: CUDA when available, else CPU.
    """
    if not distributed_launch():
        return resolve_device(None)
    try:
        from accelerate import PartialState
    except ImportError:
        rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        dev = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
        logger.debug("distributed launch without accelerate: LOCAL_RANK=%d -> %s", rank, dev)
        return dev
    dev = torch.device(PartialState().device)
    logger.debug("distributed launch: this rank's device is %s", dev)
    return dev


def offline_mode() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


#: the variables :func:`hub_offline` sets
HUB_OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}


@contextmanager
def hub_offline(extra_env: dict[str, str] | None = None) -> Iterator[None]:
    """Hugging Face offline mode inside the block; the previous state is restored after it.

    Sets :data:`HUB_OFFLINE_ENV` (and ``extra_env``). ``huggingface_hub`` and ``datasets`` read
    ``HF_HUB_OFFLINE`` once, when imported: when they already are, their module constants are
    switched too, so every request through ``huggingface_hub`` fails at once instead of retrying.
    Process-wide state: do not rely on it while other threads load models from the hub.
    """
    env = {**HUB_OFFLINE_ENV, **(extra_env or {})}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    saved_attrs = []
    for module, attr in (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, attr):
            saved_attrs.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, True)
    try:
        yield
    finally:
        for mod, attr, value in reversed(saved_attrs):
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(
            f"{what} must be a local directory (str or pathlib.Path) or a hub id 'org/name', "
            f"got {type(name_or_path).__name__}: {name_or_path!r}"
        )
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(
                f"{what} path {str(path)!r} is a file; expected a model directory (with config.json)"
            )
        return loader(str(path), **kwargs)
    name = os.fspath(name_or_path)
    if _looks_like_path(name_or_path):
        raise ModelNotAvailableError(
            f"{what} directory {name!r} does not exist (resolved to {str(path.absolute())!r}); "
            "a path is never looked up on the Hugging Face hub"
        )
    local_root = _existing_first_component(name)
    try:
        # `local_files_only` alone is not enough: transformers 5.24 still asks the hub for an
        # adapter_config.json (~25 s of retries offline), sentence-transformers for more files
        import huggingface_hub.constants  # noqa: F401  (imported, so hub_offline can switch it)

        with hub_offline():
            return loader(name, local_files_only=True, **kwargs)
    except (OSError, ValueError) as local_err:
        if local_root is not None:
            raise ModelNotAvailableError(
                f"{what} directory {name!r} does not exist (and it is not in the local Hugging "
                f"Face cache). {local_root!r} exists in {Path.cwd()}, so {name!r} is taken for a "
                "local path and the hub was not contacted; fix the path, or run from another "
                "folder to load the hub model of that name"
            ) from local_err
        if not is_hub_id(name):
            raise ModelNotAvailableError(
                f"{what} {name!r} is not a local directory (no {name!r} in {Path.cwd()}) and is "
                "not in the local Hugging Face cache; the hub was not contacted because a hub id "
                "has the form 'org/name' (e.g. 'HuggingFaceTB/SmolLM2-135M-Instruct')"
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
    logger.info("%s %r is not local: trying the Hugging Face hub", what, name)
    try:
        return loader(name, **kwargs)
    except Exception as e:  # network errors come in many types
        raise ModelNotAvailableError(
            f"{what} {name!r} is not available locally and could not be downloaded: {type(e).__name__}: {e}"
        ) from e


# huggingface_hub's repo id rule, restricted to the namespaced form the hub serves: org/name
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")


def is_hub_id(name: str) -> bool:
    """True for a string shaped like a Hugging Face hub id ``org/name`` (one ``/``, letters,
    digits, ``-``, ``_``, ``.``; no ``--`` or ``..``; not ending with ``.``)."""
    return (
        isinstance(name, str)
        and _HUB_ID.fullmatch(name) is not None
        and "--" not in name
        and ".." not in name
        and not name.endswith(".")
    )


def _looks_like_path(name_or_path: str | os.PathLike[str]) -> bool:
    """A ``Path`` (any ``os.PathLike``), or a string that can only be a filesystem path (not a hub
    id ``org/name``): starting with ``.``, ``/``, ``~`` or a backslash, absolute, holding a
    backslash or the OS's alternative separator, or with more than one ``/``."""
    if not isinstance(name_or_path, str):
        return True
    name = name_or_path
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or (os.altsep is not None and os.altsep != "/" and os.altsep in name)
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
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
    """Load a tokenizer offline first (see module doc); sets a pad token (= eos) when it has none.

    A local directory whose ``tokenizer_config.json`` declares ``"tokenizer_class":
    "PreTrainedTokenizerFast"`` (what :func:`papercore.testing.save_model_dir` writes for the
    tokenizers it builds) is loaded with that class from its ``tokenizer.json``, exactly as saved:
    transformers 5's ``AutoTokenizer`` ignores the declared class for some model types (Qwen2) and
    builds the model type's own BPE tokenizer instead, which changes the token ids.
    """
    from transformers import AutoTokenizer

    loader = AutoTokenizer.from_pretrained
    if _declares_plain_fast_tokenizer(name_or_path):
        from transformers import PreTrainedTokenizerFast

        loader = PreTrainedTokenizerFast.from_pretrained
    tok = _from_pretrained(
        loader,
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


def _declares_plain_fast_tokenizer(name_or_path: str | os.PathLike[str]) -> bool:
    """True for a local directory whose tokenizer_config.json names ``PreTrainedTokenizerFast``."""
    import json

    try:
        cfg_file = Path(name_or_path).expanduser() / "tokenizer_config.json"
        if not (cfg_file.is_file() and (cfg_file.parent / "tokenizer.json").is_file()):
            return False
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, TypeError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("tokenizer_class") == "PreTrainedTokenizerFast"


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
        name_or_path: a local directory (a ``Path`` is always taken as one) or a hub id ``org/name``.
        task: ``"causal-lm"`` | ``"seq-cls"`` | ``"token-cls"`` | ``"encoder"``.
        dtype: ``"auto"``, ``"bf16"``, ``"float32"``… or a ``torch.dtype``.
        device: ``None``/``"auto"``: this rank's device under ``accelerate launch`` / ``torchrun``
            (:func:`local_device`), else CUDA when available, else CPU.
        attn_implementation: e.g. ``"eager"`` when a method needs attention weights.
        allow_download: try the hub when the model is not local (never when ``HF_HUB_OFFLINE`` is
            set, and only for a hub id ``org/name``; see the module doc).

    With a TRL trainer, prefer passing the model *id* and ``model_init_kwargs`` (e.g.
    ``GRPOConfig(model_init_kwargs={"attn_implementation": "eager"})``): the trainer then loads
    the model itself, on each rank's device.
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
    target = local_device() if device is None or device == "auto" else resolve_device(device)
    model.to(target)
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
    st = import_sentence_transformers("loading a sentence-transformers model")
    target = local_device() if device is None or device == "auto" else resolve_device(device)
    return _from_pretrained(
        st.SentenceTransformer,
        name_or_path,
        allow_download=allow_download,
        what="sentence-transformers model",
        device=str(target),
        **kwargs,
    )


def import_sentence_transformers(purpose: str = "this") -> Any:
    """Import ``sentence_transformers`` or raise :class:`BackendUnavailableError` with the install
    command (``pip install "papercore[st]"``); ``purpose`` completes "... needs sentence-transformers"."""
    try:
        import sentence_transformers
    except ImportError as e:
        from papercore.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"{purpose} needs sentence-transformers>=6, which is not installed: "
            'pip install "papercore[st]"'
        ) from e
    return sentence_transformers
