"""Branch output cache keyed by ``(dimension, branch fingerprint, sha256(prompt, response))``.

Greedy decoding (the default) makes a branch's text a function of its input, so it can be reused across
epochs, RM variants and evaluation runs. Prompt-only dimensions (``depends_on_response=False``) hash the
prompt alone, so all responses to one prompt share one entry. With ``path`` the cache is also a JSONL file
(appended as entries are added, read back on construction).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

__all__ = ["BranchCache", "pair_hash"]


def pair_hash(prompt: str, response: str | None) -> str:
    """``sha256`` of ``(prompt, response)`` (``response=None`` for prompt-only dimensions), hex."""
    h = hashlib.sha256()
    h.update(json.dumps([prompt, response], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


class BranchCache:
    """In-memory (and optionally on-disk JSONL) map ``(dimension, fingerprint, pair hash) → aux text``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._data: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        self._data[(row["dim"], row["fp"], row["key"])] = row["text"]

    def __len__(self) -> int:
        return len(self._data)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self, dim: str, fingerprint: str, key: str) -> str | None:
        with self._lock:
            out = self._data.get((dim, fingerprint, key))
            if out is None:
                self.misses += 1
            else:
                self.hits += 1
            return out

    def put(self, dim: str, fingerprint: str, key: str, text: str) -> None:
        with self._lock:
            if (dim, fingerprint, key) in self._data:
                return
            self._data[(dim, fingerprint, key)] = text
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    row = {"dim": dim, "fp": fingerprint, "key": key, "text": text}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
