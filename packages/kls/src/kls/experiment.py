"""The classification miniature shared by the demo, the CLI and the bench: train one method, evaluate it.

Methods: ``"ce"`` (hard labels), ``"ls"`` (classic uniform label smoothing, ε = 0.1), ``"kls"``
(the reference: KLS soft labels + two-head objective, α = 1) and ``"kls_kl"`` (§2.1: ỹ with α = 0.1,
CE + λ·KL). Soft labels are fitted on the training split only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

METHODS = ("ce", "ls", "kls", "kls_kl")


def soft_label_dataset(
    method: str,
    train: Any,
    text_col: str = "text",
    label_col: str = "label",
    *,
    return_smoother: bool = False,
) -> Any:
    """The training split with the ``soft_label`` column the method needs (none for ``"ce"``);
    with ``return_smoother=True``, ``(dataset, fitted smoother or None)``."""
    from kls.smoothing import KeywordLabelSmoother, UniformLabelSmoother

    if method == "ce":
        return (train, None) if return_smoother else train
    if method == "ls":
        sm = UniformLabelSmoother(0.1)
    elif method == "kls":
        sm = KeywordLabelSmoother()
    elif method == "kls_kl":
        sm = KeywordLabelSmoother(alpha=0.1)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sm.fit(train[text_col], train[label_col])
    ds = sm.to_dataset(train, text_col=text_col, label_col=label_col)
    return (ds, sm) if return_smoother else ds


def objective_args(method: str) -> dict[str, Any]:
    return {
        "ce": {"kls_objective": "ce"},
        "ls": {"kls_objective": "soft_ce"},
        "kls": {"kls_objective": "two_head", "kls_alpha": 1.0},
        "kls_kl": {"kls_objective": "kl", "kls_lambda": 1.0},
    }[method]


@torch.no_grad()
def predict(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64, max_length: int = 160
) -> np.ndarray:
    """Arg-max class indices of a sequence classifier, ``[n]``."""
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[i : i + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(model.device)
        out.append(model(**enc).logits.argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
    }


def train_and_evaluate(
    method: str,
    data: Any,
    make_model: Callable[[int], Any],
    tokenizer: Any,
    *,
    seed: int = 0,
    epochs: float = 3,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_length: int = 64,
    warmup_ratio: float = 0.1,
    output_dir: str | None = None,
) -> dict[str, float]:
    """Fine-tune ``make_model(seed)`` with ``method`` on ``data["train"]``; scores on ``data["test"]``.

    Returns accuracy, macro-F1, training seconds and seconds per optimiser step, and
    ``leaked_fit_texts`` (True when the smoother was fitted on the test texts: the leakage guard,
    which also logs a warning).
    """
    from kls.trainer import KLSTrainer, KLSTrainingArguments
    from papercore.seeding import seed_everything

    seed_everything(seed)
    train, smoother = soft_label_dataset(method, data["train"], return_smoother=True)
    leaked = smoother is not None and smoother.warn_if_fit_texts(data["test"]["text"], what="test")
    train = train.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True
    )
    model = make_model(seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = KLSTrainingArguments(
            output_dir=output_dir or tmp,
            per_device_train_batch_size=batch_size,
            num_train_epochs=epochs,
            learning_rate=lr,
            warmup_steps=warmup_ratio,
            lr_scheduler_type="linear",
            seed=seed,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            **objective_args(method),
        )
        trainer = KLSTrainer(
            model=model, args=args, train_dataset=train, processing_class=tokenizer
        )
        t0 = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - t0
    pred = predict(trainer.model, tokenizer, data["test"]["text"], max_length=max_length)
    res = scores(data["test"]["label"], pred)
    res["train_seconds"] = seconds
    res["seconds_per_step"] = seconds / max(1, out.global_step)
    res["leaked_fit_texts"] = bool(leaked)
    return res
