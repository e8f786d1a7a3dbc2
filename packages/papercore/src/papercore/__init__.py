"""papercore: the small shared core of the paper-methods workspace.

Offline model loading (:mod:`papercore.models`), generation backends behind one sampling protocol
(:mod:`papercore.generation`), strict JSONL/table IO with atomic writes (:mod:`papercore.io`),
seeding, CLI helpers and the demo registry (:mod:`papercore.cli`, :mod:`papercore.demo`), decoder layers
and their outputs across architectures (:mod:`papercore.layers`), machine-valid ``TrainingArguments`` / TRL
configs (:mod:`papercore.trainer_args`), and offline tiny-model builders + a pytest plugin for tests
(:mod:`papercore.testing`).

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
    "papercore.demo": ("DemoResult", "demo_kind"),
    "papercore.errors": (
        "BackendResponseError",
        "BackendUnavailableError",
        "JSONLError",
        "MalformedInputError",
        "ModelNotAvailableError",
        "PapercoreError",
        "TrainingSettingsError",
        "UnknownBackendError",
        "UnsupportedArchitectureError",
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
    "papercore.layers": ("decoder_layers", "layer_hidden", "replace_layer_hidden"),
    "papercore.machine": ("machine_info",),
    "papercore.models": (
        "hub_offline",
        "is_hub_id",
        "load_model",
        "load_sentence_transformer",
        "load_tokenizer",
        "local_device",
        "resolve_device",
        "resolve_dtype",
    ),
    "papercore.seeding": ("seed_everything",),
    "papercore.trainer_args": ("training_args",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BackendResponseError",
    "BackendUnavailableError",
    "Completion",
    "DemoResult",
    "demo_kind",
    "hub_offline",
    "is_hub_id",
    "local_device",
    "JSONLError",
    "MalformedInputError",
    "ModelNotAvailableError",
    "PapercoreError",
    "SamplingConfig",
    "TrainingSettingsError",
    "UnknownBackendError",
    "UnsupportedArchitectureError",
    "append_jsonl",
    "atomic_write",
    "decoder_layers",
    "iter_jsonl",
    "layer_hidden",
    "load_model",
    "load_sentence_transformer",
    "load_tokenizer",
    "machine_info",
    "make_backend",
    "read_jsonl",
    "read_table",
    "replace_layer_hidden",
    "resolve_device",
    "resolve_dtype",
    "seed_everything",
    "training_args",
    "write_json",
    "write_jsonl",
]


__getattr__ = lazy_getattr(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from papercore.demo import DemoResult, demo_kind
    from papercore.errors import (
        BackendResponseError,
        BackendUnavailableError,
        JSONLError,
        MalformedInputError,
        ModelNotAvailableError,
        PapercoreError,
        TrainingSettingsError,
        UnknownBackendError,
        UnsupportedArchitectureError,
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
    from papercore.layers import decoder_layers, layer_hidden, replace_layer_hidden
    from papercore.machine import machine_info
    from papercore.models import (
        hub_offline,
        is_hub_id,
        load_model,
        load_sentence_transformer,
        load_tokenizer,
        local_device,
        resolve_device,
        resolve_dtype,
    )
    from papercore.seeding import seed_everything
    from papercore.trainer_args import training_args
