"""Train a tiny causal LM for a few hundred steps on a synthetic task, cached on disk.

Some behaviour can only be tested on a model that has learned something (does compression keep
what the model retrieves? which training samples did SFT fail to learn?). ``train_tiny_lm`` gives
such a model in seconds and caches it under a key made of everything that affects the weights,
so a test session trains it once and later sessions load it.

A task is any object with ``name``, ``params()`` (JSON-serialisable) and
``sample(rng) -> (prompt, answer)``; the loss is on the answer tokens (plus EOS) only.

What makes a tiny model learn (measured on a shared 2-core CPU, FACTS.md, 2026-12-02):

* **the tokenizer matters more than the size**: tiny Llama / Qwen2 models with the on-the-fly byte-level BPE
  tokenizer (:func:`~papercore.testing.builders.build_causal_tokenizer`) did not learn mod-10 arithmetic in
  2,000 steps (accuracy 0.02): BPE merges digit runs arbitrarily, so "37" and "38" share no structure. With
  a word-level tokenizer (:func:`~papercore.testing.builders.build_word_tokenizer`, one token per digit and
  keyword) the same models learned it in ~80 s. Pass ``tokenizer=build_word_tokenizer(...)`` for such tasks;
* **one torch thread**: a 300-step run took ~35 s on 1 thread and did not finish in 290 s on 2 (thread
  overhead dominates at hidden 64–128), so training runs under ``torch_threads(threads)``, default 1.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from papercore.seeding import torch_threads
from papercore.testing.builders import (
    build_causal_tokenizer,
    config_fingerprint,
    save_model_dir,
    tiny_causal_lm,
)

logger = logging.getLogger(__name__)

TRAINER_VERSION = 2  # bump when the training loop changes, to invalidate caches


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
class ModSumTask:
    """``"8 + 5 ="`` → ``" 13 mod 10 = 3"`` (``show_sum``) or ``" 3"``: the sum of two integers modulo ``modulus``.

    Operands are drawn from ``0 … max_operand``. Pairs with ``(a·31 + b) mod holdout == 0`` are never drawn by
    :meth:`sample` (the training draws); :meth:`heldout_sample` draws only them and :meth:`heldout_samples`
    lists them all (``holdout=0``: no held-out pairs).

    Why ``show_sum`` (the default): the bare residue ``(a + b) mod 10`` is uncorrelated with either operand
    alone (like parity), so a tiny model gets no gradient signal from one operand and sits at chance: a 2-layer
    Llama (hidden 64, word-level tokenizer, lr 3e-3, weight decay 0.1) was still at accuracy 0.10 after 1,800
    steps (~3 min), and at 1e-3 / 1e-2 as well. Writing the sum first (its tens digit grows with each operand)
    breaks the symmetry: the same model answered all 100 single-digit pairs after 800 steps, and with the 15
    held-out pairs never trained on, 14 of them after 1,200 steps (~60–120 s on one torch thread of a shared
    2-core CPU, measured 2026-12-02; ``tests/test_training.py``).
    """

    name: str = "mod-sum"
    modulus: int = 10
    max_operand: int = 9
    holdout: int = 7
    show_sum: bool = True

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def is_heldout(self, a: int, b: int) -> bool:
        return self.holdout > 0 and (a * 31 + b) % self.holdout == 0

    def render(self, a: int, b: int) -> tuple[str, str]:
        """The ``(prompt, answer)`` of the pair ``(a, b)``."""
        r = (a + b) % self.modulus
        answer = f" {a + b} mod {self.modulus} = {r}" if self.show_sum else f" {r}"
        return f"{a} + {b} =", answer

    def _draw(self, rng: random.Random, heldout: bool) -> tuple[str, str]:
        while True:
            a, b = rng.randint(0, self.max_operand), rng.randint(0, self.max_operand)
            if self.is_heldout(a, b) == heldout:
                return self.render(a, b)

    def sample(self, rng: random.Random) -> tuple[str, str]:
        return self._draw(rng, heldout=False)

    def heldout_sample(self, rng: random.Random) -> tuple[str, str]:
        self._check_holdout()
        return self._draw(rng, heldout=True)

    def heldout_samples(self) -> list[tuple[str, str]]:
        """Every held-out pair, in order (a deterministic evaluation set)."""
        self._check_holdout()
        n = self.max_operand + 1
        return [self.render(a, b) for a in range(n) for b in range(n) if self.is_heldout(a, b)]

    def _check_holdout(self) -> None:
        if self.holdout <= 0:
            raise ValueError(
                f"ModSumTask(holdout={self.holdout}) has no held-out pairs; expected holdout ≥ 1"
            )


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
    tokenizer: Any = None,
    threads: int = 1,
) -> Path:
    """Train (or load from ``cache_dir``) a tiny causal LM on ``task``; returns its directory.

    The directory holds ``save_pretrained`` model and tokenizer files, usable with
    :func:`papercore.models.load_model`. It is written to a temporary folder first and renamed,
    so an interrupted run never leaves a half-written model in the cache.

    Args:
        task: what to learn (default :class:`CountingTask`).
        cache_dir: where trained models are kept, one folder per cache key.
        settings: steps, batch size, learning rate, seed (default :class:`TrainSettings`).
        arch: ``"llama"``, ``"qwen2"`` or ``"mistral"`` (see :func:`~papercore.testing.builders.tiny_causal_lm`).
        model_kwargs: config overrides (``hidden_size``, ``num_hidden_layers``, …).
        tokenizer_kwargs: arguments of :func:`~papercore.testing.builders.build_causal_tokenizer`, used when
            no ``tokenizer`` is given.
        tokenizer: a ready tokenizer instead (e.g. :func:`~papercore.testing.builders.build_word_tokenizer`:
            tiny models learn digit tasks with it, not with BPE). It needs ``eos_token_id`` and
            ``pad_token_id``; its vocabulary and a fingerprint of its full definition enter the cache key.
        threads: torch threads while training (default 1: the fastest for tiny models). The caller's
            thread count is restored after; it does not enter the cache key.

    Raises:
        ValueError: both ``tokenizer`` and ``tokenizer_kwargs``, a tokenizer without eos / pad ids, or
            ``threads`` < 1.
    """

    task = task or CountingTask()
    settings = settings or TrainSettings()
    model_kwargs = dict(model_kwargs or {})
    tokenizer_kwargs = dict(tokenizer_kwargs or {})
    if tokenizer is not None and tokenizer_kwargs:
        raise ValueError(
            f"pass either tokenizer= or tokenizer_kwargs= (for build_causal_tokenizer), not both; "
            f"got tokenizer_kwargs={tokenizer_kwargs}"
        )
    if tokenizer is not None and (tokenizer.eos_token_id is None or tokenizer.pad_token_id is None):
        raise ValueError(
            f"the tokenizer needs an EOS and a pad token (answers end with EOS, batches are padded); got "
            f"eos_token={tokenizer.eos_token!r}, pad_token={tokenizer.pad_token!r}"
        )
    if threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    key = config_fingerprint(
        TRAINER_VERSION,
        task.name,
        task.params(),
        asdict(settings),
        arch,
        model_kwargs,
        tokenizer_kwargs,
        None if tokenizer is None else tokenizer_fingerprint(tokenizer),
    )
    out = Path(cache_dir) / f"{task.name}-{arch}-{key}"
    if (out / "config.json").exists():
        return out

    tok = tokenizer if tokenizer is not None else build_causal_tokenizer(**tokenizer_kwargs)
    with torch_threads(threads):
        model = _train(task, settings, arch, model_kwargs, tok)
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


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short stable hash of a tokenizer: its vocabulary (token → id), special tokens, chat template and,
    for a fast tokenizer, its whole ``tokenizer.json`` (model, pre-tokenizer, decoder, …)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return config_fingerprint(
        type(tokenizer).__name__,
        sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]),
        [str(t) for t in getattr(tokenizer, "all_special_tokens", [])],
        getattr(tokenizer, "chat_template", None),
        backend.to_str() if backend is not None else None,
    )


def _train(task: SyntheticTask, settings: TrainSettings, arch: str, model_kwargs: dict, tok: Any):
    """The training loop (AdamW, linear warm-up then decay to 5 %, clip 1.0); returns the model in eval mode."""
    import torch

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
    return model.eval()


def greedy_accuracy(
    model: Any, tokenizer: Any, samples: list[tuple[str, str]], *, threads: int = 1
) -> float:
    """Exact-match accuracy of greedy continuations: the fraction of ``(prompt, answer)`` pairs whose
    ``len(answer tokens)`` greedy tokens after ``prompt`` are exactly the answer's tokens.

    Teacher-forced in one batched forward pass (right padding; for an exact match, greedy decoding and
    teacher forcing pick the same tokens), under ``torch_threads(threads)``.
    """
    import torch

    if not samples:
        raise ValueError("samples is empty; expected (prompt, answer) pairs")
    rows, spans = [], []
    for prompt, answer in samples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not p:
            raise ValueError(f"prompt {prompt!r} encodes to no tokens; expected a non-empty prompt")
        if not a:
            raise ValueError(f"answer {answer!r} of prompt {prompt!r} encodes to no tokens")
        rows.append(p + a)
        spans.append((len(p), a))
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch_threads(threads), torch.no_grad():
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    hits = 0
    for i, (start, answer) in enumerate(spans):
        got = pred[i, start - 1 : start - 1 + len(answer)].tolist()  # logits at t predict token t+1
        hits += got == answer
    return hits / len(samples)


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
