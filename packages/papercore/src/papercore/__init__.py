"""papercore: the small shared core of the paper-methods workspace.

Offline model loading (:mod:`papercore.models`), generation backends behind one sampling protocol
(:mod:`papercore.generation`), strict JSONL/table IO with atomic writes (:mod:`papercore.io`),
seeding, CLI helpers and the demo registry (:mod:`papercore.cli`, :mod:`papercore.demo`), and
offline tiny-model builders + a pytest plugin for tests (:mod:`papercore.testing`).

Names are imported lazily so that ``import papercore`` (and every CLI's ``--help``) stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("papercore")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "papercore.demo": ("DemoResult",),
    "papercore.errors": (
        "BackendResponseError",
        "BackendUnavailableError",
        "JSONLError",
        "MalformedInputError",
        "ModelNotAvailableError",
        "PapercoreError",
        "UnknownBackendError",
    ),
    "papercore.generation": ("Completion", "SamplingConfig", "make_backend"),
    "papercore.io": (
        "append_jsonl",
        "atomic_write",
        "iter_jsonl",
        "read_jsonl",
        "read_table",
        "write_json",
        "write_jsonl",
    ),
    "papercore.machine": ("machine_info",),
    "papercore.models": (
        "load_model",
        "load_sentence_transformer",
        "load_tokenizer",
        "resolve_device",
        "resolve_dtype",
    ),
    "papercore.seeding": ("seed_everything",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BackendResponseError",
    "BackendUnavailableError",
    "Completion",
    "DemoResult",
    "JSONLError",
    "MalformedInputError",
    "ModelNotAvailableError",
    "PapercoreError",
    "SamplingConfig",
    "UnknownBackendError",
    "append_jsonl",
    "atomic_write",
    "iter_jsonl",
    "load_model",
    "load_sentence_transformer",
    "load_tokenizer",
    "machine_info",
    "make_backend",
    "read_jsonl",
    "read_table",
    "resolve_device",
    "resolve_dtype",
    "seed_everything",
    "write_json",
    "write_jsonl",
]


__getattr__ = lazy_getattr(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from papercore.demo import DemoResult
    from papercore.errors import (
        BackendResponseError,
        BackendUnavailableError,
        JSONLError,
        MalformedInputError,
        ModelNotAvailableError,
        PapercoreError,
        UnknownBackendError,
    )
    from papercore.generation import Completion, SamplingConfig, make_backend
    from papercore.io import (
        append_jsonl,
        atomic_write,
        iter_jsonl,
        read_jsonl,
        read_table,
        write_json,
        write_jsonl,
    )
    from papercore.machine import machine_info
    from papercore.models import (
        load_model,
        load_sentence_transformer,
        load_tokenizer,
        resolve_device,
        resolve_dtype,
    )
    from papercore.seeding import seed_everything
