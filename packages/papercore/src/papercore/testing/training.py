"""Train a tiny causal LM for a few hundred steps on a synthetic task, cached on disk.

Some behaviour can only be tested on a model that has learned something (does compression keep
what the model retrieves? which training samples did SFT fail to learn?). ``train_tiny_lm`` gives
such a model in seconds and caches it under a key made of everything that affects the weights,
so a test session trains it once and later sessions load it.

A task is any object with ``name``, ``params()`` (JSON-serialisable) and
``sample(rng) -> (prompt, answer)``; the loss is on the answer tokens (plus EOS) only.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from papercore.testing.builders import (
    build_causal_tokenizer,
    config_fingerprint,
    save_model_dir,
    tiny_causal_lm,
)

logger = logging.getLogger(__name__)

TRAINER_VERSION = 1  # bump when the training loop changes, to invalidate caches


class SyntheticTask(Protocol):
    name: str

    def params(self) -> dict[str, Any]: ...

    def sample(self, rng: random.Random) -> tuple[str, str]: ...


@dataclass(frozen=True)
class CountingTask:
    """``"count: 17 18 19"`` → ``" 20 21 22"``: continue a run of consecutive integers."""

    name: str = "counting"
    min_start: int = 0
    max_start: int = 90
    shown: int = 3
    answer_len: int = 3

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def sample(self, rng: random.Random) -> tuple[str, str]:
        a = rng.randint(self.min_start, self.max_start)
        prompt = "count: " + " ".join(str(a + i) for i in range(self.shown))
        answer = "".join(f" {a + self.shown + i}" for i in range(self.answer_len))
        return prompt, answer


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup: int = 20
    seed: int = 0


def train_tiny_lm(
    task: SyntheticTask | None = None,
    *,
    cache_dir: str | Path,
    settings: TrainSettings | None = None,
    arch: str = "llama",
    model_kwargs: dict[str, Any] | None = None,
    tokenizer_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Train (or load from ``cache_dir``) a tiny causal LM on ``task``; returns its directory.

    The directory holds ``save_pretrained`` model and tokenizer files, usable with
    :func:`papercore.models.load_model`. It is written to a temporary folder first and renamed,
    so an interrupted run never leaves a half-written model in the cache.
    """
    import torch

    task = task or CountingTask()
    settings = settings or TrainSettings()
    model_kwargs = dict(model_kwargs or {})
    tokenizer_kwargs = dict(tokenizer_kwargs or {})
    key = config_fingerprint(
        TRAINER_VERSION,
        task.name,
        task.params(),
        asdict(settings),
        arch,
        model_kwargs,
        tokenizer_kwargs,
    )
    out = Path(cache_dir) / f"{task.name}-{arch}-{key}"
    if (out / "config.json").exists():
        return out

    tok = build_causal_tokenizer(**tokenizer_kwargs)
    model = tiny_causal_lm(arch, tokenizer=tok, seed=settings.seed, **model_kwargs)
    model.train()
    rng = random.Random(settings.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(1, settings.warmup)) * max(0.0, 1 - s / settings.steps) + 0.05
        ),
    )
    torch.manual_seed(settings.seed)
    for step in range(settings.steps):
        batch = [task.sample(rng) for _ in range(settings.batch_size)]
        input_ids, labels = _encode_batch(tok, batch)
        loss = model(input_ids=input_ids, labels=labels).loss  # right padding: causal mask suffices
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0:
            logger.info("train_tiny_lm %s step %d loss %.4f", task.name, step, loss.item())
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_model_dir(model, tok, tmp)
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():  # another process may have won the race
            raise
    return out


def _encode_batch(tok: Any, batch: list[tuple[str, str]]):
    """Right-padded ids and labels with the loss on answer tokens + EOS only (prompt and padding = -100)."""
    import torch

    rows, labels = [], []
    for prompt, answer in batch:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, rows))
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    return ids, lab
