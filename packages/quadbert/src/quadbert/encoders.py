"""Loading a SentenceTransformer bi-encoder: a local directory first, then the local hub cache."""

from __future__ import annotations

import os
from typing import Any


def load_encoder(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | None = None,
    allow_download: bool = False,
) -> Any:
    """A ``SentenceTransformer`` from a local directory (or a name already in the local cache).

    Uses papercore's offline-first resolution: a missing directory or an uncached name raises
    :class:`papercore.errors.ModelNotAvailableError` (a ``FileNotFoundError``) saying where it looked.
    Nothing is downloaded unless ``allow_download=True``.
    """
    from papercore.models import load_sentence_transformer

    return load_sentence_transformer(name_or_path, device=device, allow_download=allow_download)
