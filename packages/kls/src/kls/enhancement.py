"""LE: label enhancement for embedding retrieval (§2.4 [inferred design]) and two alternative LE baselines.

:class:`LabelEnhancer` trains a separate *LE model* g — an encoder initialised from the retriever's
checkpoint — supervised on the hard labels, with a term-weighting prior injected into its
contextual token embeddings::

    a_i = softmax_i( log(w_i + ε) + u·h_i )           # prior-weighted attention pooling, ε = 1e-4
    e   = Σ_i a_i h_i ;  e ← e / ‖e‖
    s_LE(q, d) = e_q·e_d + γ · Σ_{t ∈ q∩d} w(t|q)·w(t|d)     # γ learned, init 0.1

w are BM25 (or TF-IDF) weights of each word in its text (L2-normalised per text in the
lexical term [inferred]), or, with ``weighter="deepct"``, DeepCT weights for documents
(:class:`~kls.deepct.DeepCTWeighter`, trained on the training pairs' query term recall, initialised
from the same checkpoint) and BM25 weights for queries; every wordpiece inherits its word's
weight. g is trained with cross-entropy over the in-batch candidate documents (own group +
other rows' groups) at temperature τ_LE, in a ``transformers.Trainer`` run (schedule, clipping,
AMP, ``accelerate launch``, checkpoints and exact resume). Its label distribution ``D_q = softmax(s_LE(q, G_q)/τ_LE)``
is mixed with the hard label, ``ỹ = (1 − α)·onehot(d⁺) + α·D_q`` (``keep_gold_top`` keeps d⁺ on
top), stored as the ``label`` column, and g is discarded: the retriever gains no parameters.

Baselines (no training, frozen encoder): :class:`LabelPropagationEnhancer` (Zhou et al. 2004 on a
kNN graph of the group) and :class:`KNNSmoothingEnhancer` (GLLE-style: similarity to d⁺).
``"bm25"`` (static prior) is the default; ``"auto"`` picks ``"deepct"`` from 1,000 training pairs
on (the spec's rule) and ``"bm25"`` below.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kls._checks import check_range
from kls._math import softmax_rows
from kls.errors import NotFittedError, OutOfRangeError
from kls.groups import check_group, group_label, negative_columns, read_groups
from kls.weighting import BM25Weighter, TfidfWeighter

logger = logging.getLogger(__name__)


def _is_path(x: Any) -> bool:
    return isinstance(x, str) or hasattr(x, "__fspath__")


def _encoder_and_tokenizer(base_model: Any) -> tuple[nn.Module, Any]:
    """(HF encoder, tokenizer) from a SentenceTransformer, a model directory, or an (encoder, tokenizer) pair."""
    if isinstance(base_model, tuple):
        return base_model
    if _is_path(base_model):
        from papercore.models import load_model, load_tokenizer

        tok = load_tokenizer(base_model)  # a missing path: ModelNotAvailableError naming it
        enc = load_model(base_model, task="encoder", dtype=torch.float32, device="cpu")
        return enc, tok
    first = base_model[0]  # SentenceTransformer: modules[0] is the Transformer
    enc = getattr(first, "auto_model", None) or getattr(first, "model", None)
    tok = getattr(first, "tokenizer", None) or getattr(first, "processor", None)
    if enc is None or tok is None:
        raise TypeError(
            f"cannot find the transformer and tokenizer of {type(base_model).__name__}; pass a "
            "SentenceTransformer, a model directory, or an (encoder, tokenizer) pair"
        )
    return enc, tok


#: ``weighter="auto"`` uses the DeepCT prior from this many training pairs on (spec §2.4)
AUTO_DEEPCT_MIN_PAIRS = 1000

#: the term priors ``LabelEnhancer(weighter=...)`` takes by name (or pass a term-weighter object)
WEIGHTERS = ("bm25", "tfidf", "deepct", "auto")


def _make_weighter(weighter: Any) -> Any:
    """A fresh weighter for the strings ``"bm25"`` / ``"tfidf"``, the strings ``"deepct"`` /
    ``"auto"`` themselves (resolved at ``fit``), or the given weighter object."""
    if isinstance(weighter, str):
        if weighter == "bm25":
            return BM25Weighter()
        if weighter == "tfidf":
            return TfidfWeighter()
        if weighter in ("deepct", "auto"):
            return weighter
    elif hasattr(weighter, "fit") and hasattr(weighter, "matrix"):
        return weighter
    raise ValueError(
        f"weighter must be one of {', '.join(map(repr, WEIGHTERS))} or a term weighter, "
        f"got {weighter!r}"
    )


class LEModel(nn.Module):
    """The LE model g: encoder + prior-weighted attention pooling (u) + lexical-overlap weight γ."""

    def __init__(self, encoder: nn.Module, gamma_init: float = 0.1, eps: float = 1e-4):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.u = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.u.weight)  # start from pure prior pooling
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self.eps = eps

    def embed(self, batch: Mapping[str, torch.Tensor], prior: torch.Tensor) -> torch.Tensor:
        """``e`` ``[B, H]`` (L2-normalised) from token states and the token prior ``w`` ``[B, T]``."""
        h = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        logits = torch.log(prior + self.eps) + self.u(h).squeeze(-1)  # log(w_i + ε) + u·h_i
        logits = logits.masked_fill(batch["attention_mask"] == 0, float("-inf"))
        a = torch.softmax(logits, dim=-1)
        e = torch.einsum("bt,bth->bh", a, h)
        return F.normalize(e, dim=-1)

    def forward(
        self,
        q_input_ids: torch.Tensor,
        q_attention_mask: torch.Tensor,
        q_prior: torch.Tensor,
        d_input_ids: torch.Tensor,
        d_attention_mask: torch.Tensor,
        d_prior: torch.Tensor,
        lexical: torch.Tensor,
    ) -> torch.Tensor:
        """``s_LE(q, d)`` ``[Q, D]`` = ``e_q·e_d + γ·lexical`` for a collated batch (see the collator)."""
        eq = self.embed({"input_ids": q_input_ids, "attention_mask": q_attention_mask}, q_prior)
        ed = self.embed({"input_ids": d_input_ids, "attention_mask": d_attention_mask}, d_prior)
        return eq @ ed.T + self.gamma * lexical


def _le_trainer_class():
    from transformers import Trainer

    class LETrainer(Trainer):
        """``Trainer`` with LE's loss: cross-entropy over the in-batch candidates at τ_LE."""

        tau: float = 0.1

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            target = inputs.pop("labels")  # index of each query's own positive
            scores = model(**inputs)
            loss = F.cross_entropy(scores / self.tau, target)
            return (loss, {"scores": scores}) if return_outputs else loss

    return LETrainer


class LabelEnhancer:
    """Supervised label enhancement with a term-weighting prior (LE, §2.4).

    Args:
        base_model: the retriever's checkpoint (SentenceTransformer, model directory, or
            ``(encoder, tokenizer)``); g is a *copy*, the original is untouched.
        weighter: ``"bm25"`` (default here), ``"tfidf"``, ``"deepct"`` (a
            :class:`~kls.deepct.DeepCTWeighter` trained at ``fit`` on the training pairs, from the
            same checkpoint; queries keep BM25), ``"auto"`` (``"deepct"`` from
            :data:`AUTO_DEEPCT_MIN_PAIRS` training pairs on, else ``"bm25"``), or a term weighter
            (a :class:`~kls.deepct.DeepCTWeighter` instance is trained at ``fit`` unless already
            fitted; a fitted one is used as given, only its BM25 query side is refitted). The
            choice is resolved afresh at every ``fit`` (a new DeepCT model, a new ``"auto"``
            decision); the resolved weighter is :attr:`weighter` after ``fit``.
        alpha: mixing weight α ∈ [0, 1) (0.2); tau: τ_LE > 0 (0.1, cosine scale).
        keep_gold_top: force argmax(ỹ) = d⁺.
        epochs, batch_size, lr: training of g (1 epoch, 16, 2e-5).
        max_length: tokens per text, for g and for a DeepCT weighter built at ``fit``.
        deepct_kwargs: keyword arguments of :meth:`DeepCTWeighter.fit` (epochs, lr, head_lr, …).
    """

    def __init__(
        self,
        base_model: Any,
        weighter: Any = "bm25",
        alpha: float = 0.2,
        tau: float = 0.1,
        keep_gold_top: bool = True,
        epochs: int = 1,
        batch_size: int = 16,
        lr: float = 2e-5,
        device: str | None = None,
        *,
        max_length: int = 128,
        gamma_init: float = 0.1,
        seed: int = 0,
        deepct_kwargs: Mapping[str, Any] | None = None,
    ):
        self.alpha = check_range("alpha", alpha, low=0.0, high=1.0, high_open=True)
        self.tau = check_range("tau", tau, low=0.0, low_open=True)
        check_range("lr", lr, low=0.0, low_open=True)
        if epochs < 0 or batch_size < 1:
            raise OutOfRangeError(
                f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}"
            )
        self.keep_gold_top = keep_gold_top
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.max_length = max_length
        self.seed = seed
        from papercore.models import resolve_device

        self.device = resolve_device(device)
        self.weighter_choice = weighter  # resolved afresh at every fit
        self.weighter = _make_weighter(weighter)  # the resolved weighter (after fit)
        self.deepct_kwargs = dict(deepct_kwargs or {})
        encoder, self.tokenizer = _encoder_and_tokenizer(base_model)
        self._base_model = base_model  # a "deepct" weighter starts from it (g trains its copy)
        self.model = LEModel(copy.deepcopy(encoder), gamma_init=gamma_init).to(self.device)

    # ------------------------------------------------------------ features
    def _matrix(self, texts: Sequence[str], kind: str):
        """``[n, V]`` word weights; queries use the weighter's ``query_matrix`` when it has one."""
        if kind == "query" and hasattr(self.weighter, "query_matrix"):
            return self.weighter.query_matrix(texts)
        return self.weighter.matrix(texts)

    def _prior(self, texts: Sequence[str], enc: Any, kind: str = "doc") -> torch.Tensor:
        """Token prior ``[B, T]``: each token inherits the term weight of the word it belongs to
        (:func:`kls.deepct.word_spans`: lower-cased ``\\w+`` runs, or the tokens of the weighter's own
        tokenizer when it was given one, e.g. a Chinese word segmenter); 0 for tokens outside every
        word (special tokens, padding, punctuation). ``enc`` must hold ``offset_mapping``."""
        from kls.deepct import token_word_ids, word_spans

        W = self._matrix(texts, kind)
        vocab = self.weighter.vocabulary_
        # a weighter built with its own tokenizer (BM25Weighter(tokenizer=...)) defines the words
        words = self.weighter.tokenizer if getattr(self.weighter, "_user_tokenizer", None) else None
        out = torch.zeros(enc["input_ids"].shape, dtype=torch.float32)
        for b, text in enumerate(texts):
            row = W.getrow(b)
            weights = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
            spans = word_spans(text, words)
            for t, k in enumerate(token_word_ids(enc["offset_mapping"][b].tolist(), spans)):
                j = None if k is None else vocab.get(spans[k][2])
                if j is not None:
                    out[b, t] = weights.get(j, 0.0)
        return out

    def _tokenize(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )

    def _embed(self, texts: Sequence[str], kind: str = "doc") -> torch.Tensor:
        enc = self._tokenize(texts)
        prior = self._prior(texts, enc, kind).to(self.device)
        batch = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}
        return self.model.embed(batch, prior)

    def _lexical(self, queries: Sequence[str], docs: Sequence[str]) -> torch.Tensor:
        """``Σ_{t∈q∩d} w(t|q)·w(t|d)`` for all query × doc pairs, ``[Q, D]``.

        Each text's weight vector is L2-normalised first [inferred], so the term lies in [0, 1] like
        the cosine it is added to (raw BM25 products reach tens and swamp e_q·e_d at τ_LE = 0.1).
        """
        from sklearn.preprocessing import normalize

        Q = normalize(self._matrix(queries, "query"))
        D = normalize(self._matrix(docs, "doc"))
        return torch.from_numpy(np.asarray((Q @ D.T).todense(), dtype=np.float32)).to(self.device)

    def scores(self, queries: Sequence[str], docs: Sequence[str]) -> torch.Tensor:
        """``s_LE(q, d)`` for all pairs, ``[Q, D]`` (with gradients when training)."""
        eq, ed = self._embed(queries, "query"), self._embed(docs, "doc")
        return eq @ ed.T + self.model.gamma * self._lexical(queries, docs)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_ds: Any,
        corpus: Mapping[str, str] | None = None,
        *,
        query_col: str = "anchor",
        pos_col: str = "positive",
        neg_cols: Sequence[str] | None = None,
        output_dir: str | None = None,
        resume_from_checkpoint: str | bool | None = None,
        **training_args: Any,
    ) -> LabelEnhancer:
        """Fit the prior (on ``corpus`` when given, else on the training texts) and train g on the hard labels.

        g trains in a ``transformers.Trainer`` run (so ``accelerate launch``, ``fp16`` / ``bf16``,
        gradient clipping and LR schedules work as usual): ``epochs``, ``batch_size``, ``lr`` and
        ``seed`` of the constructor, weight decay 0, logging every step (:attr:`losses_`). With
        ``output_dir`` it checkpoints there (every epoch unless ``save_strategy`` / ``save_steps``
        say otherwise) and ``resume_from_checkpoint`` (a checkpoint directory, or ``True`` for the
        last one in ``output_dir``) continues a run exactly. Other keyword arguments go to
        ``TrainingArguments``. The caller's ``random`` / NumPy / torch RNG states are restored.
        """
        neg_cols = negative_columns(train_ds, query_col, pos_col, neg_cols)
        queries, groups = read_groups(train_ds, query_col, pos_col, neg_cols)
        if len(queries) < 100:
            logger.warning(
                "LE model trained on %d pairs (< 100): its label distribution is unreliable",
                len(queries),
            )
        texts = list(corpus.values()) if corpus else [d for g in groups for d in g]
        self._fit_weighter(queries, groups, texts)
        self._train(queries, groups, output_dir, resume_from_checkpoint, training_args)
        self.fitted_ = True
        return self

    def _collator(self, queries: Sequence[str], groups: Sequence[Sequence[str]]):
        """Rows ``{"idx": i}`` → one in-batch training step's tensors (tokens, priors, lexical term)."""

        def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            idx = [int(r["idx"]) for r in rows]
            qs = [queries[i] for i in idx]
            docs = [d for i in idx for d in groups[i]]  # own group + in-batch groups
            eq, ed = self._tokenize(qs), self._tokenize(docs)
            return {
                "q_input_ids": eq["input_ids"],
                "q_attention_mask": eq["attention_mask"],
                "q_prior": self._prior(qs, eq, "query"),
                "d_input_ids": ed["input_ids"],
                "d_attention_mask": ed["attention_mask"],
                "d_prior": self._prior(docs, ed, "doc"),
                "lexical": self._lexical(qs, docs).cpu(),
                "labels": torch.arange(len(idx)) * len(groups[idx[0]]),  # own positive
            }

        return collate

    def _train(
        self,
        queries: Sequence[str],
        groups: Sequence[Sequence[str]],
        output_dir: str | None,
        resume_from_checkpoint: str | bool | None,
        training_args: Mapping[str, Any],
    ) -> None:
        """Train g on the hard labels with ``transformers.Trainer`` (AdamW, linear schedule,
        clipping at 1.0; checkpoints and resume when ``output_dir`` is given)."""
        import datasets
        from transformers import PrinterCallback, TrainingArguments

        from kls.deepct import _check_trainer_device, _kept_rng_states

        self.losses_: list[float] = []
        if self.epochs == 0:
            self.model.eval()
            return
        on_cpu = self.device.type == "cpu"
        with (
            tempfile.TemporaryDirectory() as tmp,
            _kept_rng_states(cuda=self.device.type == "cuda"),
        ):
            settings: dict[str, Any] = {
                "output_dir": str(output_dir) if output_dir is not None else tmp,
                "num_train_epochs": self.epochs,
                "learning_rate": self.lr,
                "per_device_train_batch_size": self.batch_size,
                "weight_decay": 0.0,
                "logging_steps": 1,
                "save_strategy": "no" if output_dir is None else "epoch",
                "report_to": [],
                "disable_tqdm": True,
                "remove_unused_columns": False,
                "seed": self.seed,
                "use_cpu": on_cpu,
                "dataloader_pin_memory": False,
            }
            settings.update(training_args)
            args = TrainingArguments(**settings)
            if not on_cpu:
                _check_trainer_device(self.device, args.device)
            trainer = _le_trainer_class()(
                model=self.model,
                args=args,
                train_dataset=datasets.Dataset.from_dict({"idx": list(range(len(queries)))}),
                data_collator=self._collator(queries, groups),
            )
            trainer.tau = self.tau
            trainer.remove_callback(PrinterCallback)  # logs stay in trainer.state.log_history
            trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        self.losses_ = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        self.model.to(self.device).eval()

    def _fit_weighter(
        self, queries: Sequence[str], groups: Sequence[Sequence[str]], texts: list[str]
    ) -> None:
        from kls.deepct import DeepCTWeighter

        w = _make_weighter(self.weighter_choice)  # fresh at every fit
        if isinstance(w, str) and w == "auto":
            w = "deepct" if len(queries) >= AUTO_DEEPCT_MIN_PAIRS else "bm25"
            logger.info("weighter='auto': %d training pairs -> %s prior", len(queries), w)
            w = _make_weighter(w)
        if isinstance(w, str) and w == "deepct":  # from the checkpoint g was copied from
            encoder = _encoder_and_tokenizer(self._base_model)[0]  # a path is reloaded
            w = DeepCTWeighter(
                (encoder, self.tokenizer),
                max_length=self.max_length,
                device=str(self.device),
                seed=self.seed,
                batch_size=self.batch_size,
            )
        self.weighter = w
        if isinstance(w, DeepCTWeighter):
            if w.fitted_:
                w.fit_query_weights(texts + list(queries))
            else:  # query i is relevant to its group's positive
                w.fit(
                    list(queries),
                    [g[0] for g in groups],
                    corpus=texts + list(queries),
                    **{"seed": self.seed, **self.deepct_kwargs},
                )
            w.word_weights(list(dict.fromkeys(d for g in groups for d in g)))  # cache
        else:
            w.fit(texts + list(queries))

    # ------------------------------------------------------------- outputs
    def _check(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError("LabelEnhancer: call fit(train_ds) first")

    @torch.no_grad()
    def _distributions(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
        out = []
        for start in range(0, len(queries), self.batch_size):
            qs = queries[start : start + self.batch_size]
            gs = groups[start : start + self.batch_size]
            docs = [d for grp in gs for d in grp]
            S = self.scores(qs, docs).cpu().numpy()
            k = len(gs[0])
            own = np.stack([S[i, i * k : (i + 1) * k] for i in range(len(qs))])
            out.append(softmax_rows(own, self.tau))  # D_q = softmax(s_LE(q, G_q) / τ_LE)
        return np.vstack(out)

    def label_distribution(self, query: str, group: Sequence[str]) -> np.ndarray:
        """ỹ over ``group`` (``group[0]`` = d⁺): ``(1 − α)·onehot + α·D_q``."""
        self._check()
        check_group(group)
        D = self._distributions([query], [list(group)])[0]
        return group_label(D, self.alpha, self.keep_gold_top)

    def to_dataset(
        self,
        ds: Any,
        query_col: str = "anchor",
        pos_col: str = "positive",
        neg_cols: Sequence[str] | None = None,
        out_col: str = "label",
    ) -> Any:
        self._check()
        return _add_labels(self, ds, query_col, pos_col, neg_cols, out_col)

    def _labels(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
        D = self._distributions(queries, groups)
        return np.vstack([group_label(d, self.alpha, self.keep_gold_top) for d in D])


def _add_labels(
    obj: Any, ds: Any, query_col: str, pos_col: str, neg_cols: Any, out_col: str
) -> Any:
    neg_cols = negative_columns(ds, query_col, pos_col, neg_cols)
    queries, groups = read_groups(ds, query_col, pos_col, neg_cols)
    Y = obj._labels(queries, groups)
    if out_col in ds.column_names:
        ds = ds.remove_columns(out_col)
    return ds.add_column(out_col, Y.astype(np.float32).tolist())


class _FrozenEnhancer:
    """Shared plumbing of the training-free LE baselines: frozen sentence-transformer embeddings."""

    def __init__(
        self, model: Any, alpha: float = 0.2, keep_gold_top: bool = True, batch_size: int = 64
    ):
        self.model = model
        self.alpha = check_range("alpha", alpha, low=0.0, high=1.0, high_open=True)
        self.keep_gold_top = keep_gold_top
        self.batch_size = batch_size

    def fit(self, train_ds: Any = None, corpus: Mapping[str, str] | None = None, **_: Any):
        return self  # no training

    def _embed_groups(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
        flat = [d for g in groups for d in g]
        uniq = list(dict.fromkeys(flat))
        E = self.model.encode(
            uniq,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        pos = {t: i for i, t in enumerate(uniq)}
        return E[[pos[t] for t in flat]].reshape(len(groups), len(groups[0]), -1)

    def _labels(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
        E = self._embed_groups(groups)
        D = np.vstack([self._distribution(e) for e in E])
        return np.vstack([group_label(d, self.alpha, self.keep_gold_top) for d in D])

    def label_distribution(self, query: str, group: Sequence[str]) -> np.ndarray:
        check_group(group)
        return self._labels([query], [list(group)])[0]

    def to_dataset(
        self, ds, query_col="anchor", pos_col="positive", neg_cols=None, out_col="label"
    ):
        return _add_labels(self, ds, query_col, pos_col, neg_cols, out_col)


class LabelPropagationEnhancer(_FrozenEnhancer):
    """Label propagation (Zhou et al. 2004) over a kNN graph of the group's documents [inferred baseline].

    ``W_ij = max(cos(e_i, e_j), 0)`` for the k nearest neighbours (symmetrised), ``S = D^{-1/2} W D^{-1/2}``,
    ``F ← β·S·F + (1 − β)·Y`` for ``iterations`` steps from Y = onehot(d⁺); D_q = F / ΣF.
    """

    def __init__(
        self,
        model: Any,
        alpha: float = 0.2,
        k: int = 5,
        beta: float = 0.5,
        iterations: int = 20,
        keep_gold_top: bool = True,
    ):
        super().__init__(model, alpha, keep_gold_top)
        self.k = int(k)
        self.beta = check_range("beta", beta, low=0.0, high=1.0, high_open=True)
        self.iterations = int(iterations)

    def _distribution(self, E: np.ndarray) -> np.ndarray:
        n = E.shape[0]
        sim = np.clip(E @ E.T, 0.0, None)
        np.fill_diagonal(sim, 0.0)
        k = min(self.k, n - 1)
        W = np.zeros_like(sim)
        nn_idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        rows = np.repeat(np.arange(n), k)
        W[rows, nn_idx.ravel()] = sim[rows, nn_idx.ravel()]
        W = np.maximum(W, W.T)
        d = W.sum(axis=1)
        dinv = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0)
        S = dinv[:, None] * W * dinv[None, :]
        Y = np.zeros(n)
        Y[0] = 1.0
        Fv = Y.copy()
        for _ in range(self.iterations):
            Fv = self.beta * S @ Fv + (1.0 - self.beta) * Y
        return Fv / Fv.sum()


class KNNSmoothingEnhancer(_FrozenEnhancer):
    """GLLE-style smoothing [inferred baseline]: ``D_q(d) ∝ exp(cos(e_d, e_{d⁺}) / τ)`` over the group."""

    def __init__(
        self, model: Any, alpha: float = 0.2, tau: float = 0.1, keep_gold_top: bool = True
    ):
        super().__init__(model, alpha, keep_gold_top)
        self.tau = check_range("tau", tau, low=0.0, low_open=True)

    def _distribution(self, E: np.ndarray) -> np.ndarray:
        return softmax_rows((E @ E[0])[None, :], self.tau)[0]


__all__ = ["KNNSmoothingEnhancer", "LEModel", "LabelEnhancer", "LabelPropagationEnhancer"]
