"""DeepCT-style *dynamic* (context-dependent) term weights — the ``"deepct"`` prior of LE (§2.4).

Dai & Callan, *Context-Aware Sentence/Passage Term Importance Estimation for First Stage
Retrieval* (DeepCT, arXiv 1910.10687): a linear head on an encoder's token states predicts each
document token's importance,

    ŵ_i = ReLU(v·h_i + b)

trained with a mean squared error against the **query term recall** of the token's word,

    QTR(t, d) = |{q relevant to d : t ∈ q}| / |{q relevant to d}|.

Here [inferred where not in the spec]:

* a word is a lower-cased ``\\w+`` run of the text (:func:`word_spans`, the one definition used
  for query terms, DeepCT targets and predictions, and the LE token prior; the BM25 vocabulary's
  ``\\w\\w+`` words are its runs of two or more characters), whatever the tokenizer's own
  pre-tokenisation ("pie," is the word "pie" for WordPiece, SentencePiece and byte-level BPE alike);
  a token belongs to the first word its character span overlaps and inherits that word's target;
  tokens overlapping no word (special tokens, padding, punctuation) are masked out of the loss;
  documents without a relevant query are not trained on;
* the MSE is taken on the head's *pre-ReLU* output (DeepCT's plain regression; targets are in
  [0, 1], so the ReLU at inference only clips) — a ReLU inside the loss would freeze every token
  whose output starts negative;
* the freshly initialised head gets its own learning rate (``head_lr``, 1e-3) while the encoder
  uses ``lr`` (2e-5, DeepCT's): at 2e-5 alone the head barely moves in the few hundred steps of a
  small training set;
* a word's weight in a text is the mean over its wordpieces, and the max over its occurrences
  (every occurrence counts separately, also when the same word appears twice in a row);
* queries are weighted by BM25 (the spec's fallback; no "document term recall" head).

Training is a ``transformers.Trainer`` run (``compute_loss`` overridden), so it runs under
``accelerate launch`` unchanged. The model is a plain ``AutoModelForTokenClassification`` with one
label: :meth:`DeepCTWeighter.save_pretrained` writes a plain HF directory (plus a small
``kls_deepct.json`` marking it as trained), which :meth:`DeepCTWeighter.from_pretrained` reloads.
The model is built and loaded in float32 whatever dtype the checkpoint's config names, and
:meth:`DeepCTWeighter.fit` leaves the caller's ``random`` / NumPy / torch RNG states as it found them.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import random
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls.errors import EmptyInputError, NotFittedError, UnknownIdError
from kls.weighting import BM25Weighter

SIDECAR = "kls_deepct.json"
_TERM = re.compile(r"\w+")


def word_spans(text: str, tokenize: Any = None) -> list[tuple[int, int, str]]:
    """The words of ``text``: ``(start, end, word)`` of every ``\\w+`` run, ``word`` lower-cased.

    The one definition of a word in DeepCT and the LE prior: query terms, training targets,
    predictions and the token prior all use it. Offsets index ``text`` itself (when lower-casing
    changes the length, the runs are found in ``text`` and lower-cased one by one).

    ``tokenize`` (a term weighter's own tokenizer, ``str -> list[str]``, e.g. ``jieba.lcut`` for
    Chinese, whose words are not ``\\w+`` runs) makes its tokens the words instead: each is found
    in the text after the previous one (case-insensitively); a token that is not a substring there
    (normalised by the tokenizer) is left out.
    """
    low = text.lower()
    if tokenize is not None:
        spans, pos = [], 0
        for tok in tokenize(text):
            w = str(tok).lower()
            k = low.find(w, pos) if w and len(low) == len(text) else -1
            if k >= 0:
                spans.append((k, k + len(w), w))
                pos = k + len(w)
        return spans
    if len(low) != len(text):
        return [(m.start(), m.end(), m.group().lower()) for m in _TERM.finditer(text)]
    return [(m.start(), m.end(), m.group()) for m in _TERM.finditer(low)]


def token_word_ids(
    offsets: Iterable[Sequence[int]], spans: Sequence[tuple[int, int, str]]
) -> list[int | None]:
    """For every token (its ``(start, end)`` character offsets), the index in ``spans`` of the first
    word it overlaps; None when it overlaps none (special tokens and padding, whose offsets are
    empty, and punctuation)."""
    ends = [e for _, e, _ in spans]
    out: list[int | None] = []
    for s, e in offsets:
        s, e = int(s), int(e)
        k = bisect.bisect_right(ends, s)  # the first word that ends after the token starts
        out.append(k if s < e and k < len(spans) and spans[k][0] < e else None)
    return out


def query_terms(text: str) -> set[str]:
    """The terms of a query: its words (lower-cased ``\\w+`` runs, :func:`word_spans`)."""
    return {w for _, _, w in word_spans(text)}


def _texts(
    x: Mapping[Any, str] | Sequence[str], what: str, *, allow_empty: bool = False
) -> dict[str, str]:
    """``{id: text}`` from a mapping or a sequence (ids = positions, as strings); no empty text.

    ``allow_empty``: an empty collection is fine (each text must still be a non-empty string).
    """
    if isinstance(x, str):
        raise TypeError(f"{what}s must be a sequence or a mapping of texts, got one string")
    pairs = list(x.items()) if isinstance(x, Mapping) else list(enumerate(x))
    if not pairs and not allow_empty:
        raise EmptyInputError(f"no {what} texts given")
    for k, t in pairs:
        if not isinstance(t, str):
            raise TypeError(f"{what} {k!r} is a {type(t).__name__}, expected a string")
        if not t.strip():
            raise EmptyInputError(f"{what} {k!r} is empty")
    return {str(k): t for k, t in pairs}


def _relevant(qrels: Mapping[Any, Any]) -> dict[str, set[str]]:
    """``{qid: {docid}}`` from ``{qid: set}`` or ``{qid: {docid: grade}}`` (grade > 0 is relevant)."""
    if not isinstance(qrels, Mapping):
        raise TypeError(f"qrels must map query ids to document ids, got {type(qrels).__name__}")
    out: dict[str, set[str]] = {}
    for q, docs in qrels.items():
        if isinstance(docs, Mapping):
            ids = {str(d) for d, g in docs.items() if g > 0}
        elif isinstance(docs, str | int):
            ids = {str(docs)}
        else:
            ids = {str(d) for d in docs}
        if ids:
            out[str(q)] = ids
    return out


def _pairs(queries: Sequence[str], docs: Sequence[str]):
    """Aligned (query, relevant document) pairs → ids; equal document texts share one id."""
    if isinstance(queries, Mapping) or isinstance(docs, Mapping):
        raise TypeError("without qrels, queries and docs must be aligned sequences of texts")
    if len(queries) != len(docs):
        raise ValueError(
            f"without qrels, queries[i] is relevant to docs[i]: got {len(queries)} queries "
            f"and {len(docs)} documents"
        )
    Q = _texts(queries, "query")
    _texts(docs, "document")
    doc_ids: dict[str, str] = {}
    for t in docs:
        doc_ids.setdefault(t, str(len(doc_ids)))
    D = {i: t for t, i in doc_ids.items()}
    return Q, D, {str(i): {doc_ids[t]} for i, t in enumerate(docs)}


def query_term_recall(
    queries: Mapping[Any, str] | Sequence[str],
    docs: Mapping[Any, str] | Sequence[str],
    qrels: Mapping[Any, Any],
) -> dict[str, dict[str, float]]:
    """``{doc_id: {term: QTR(term, doc)}}`` for every term of every document with a relevant query.

    ``queries`` / ``docs``: ``{id: text}`` or sequences (ids = positions); ``qrels``:
    ``{qid: {docid, …}}`` or ``{qid: {docid: grade}}``. Terms of the document that no relevant
    query contains get 0. Raises :class:`UnknownIdError` for ids in ``qrels`` that are not in
    ``queries`` / ``docs``.
    """
    Q, D = _texts(queries, "query"), _texts(docs, "document")
    rel = _relevant(qrels)
    bad_q = sorted(set(rel) - set(Q))
    bad_d = sorted({d for ds in rel.values() for d in ds} - set(D))
    if bad_q or bad_d:
        parts = [
            f"query ids {bad_q[:10]}" if bad_q else "",
            f"document ids {bad_d[:10]}" if bad_d else "",
        ]
        raise UnknownIdError(
            "qrels reference unknown "
            + " and ".join(p for p in parts if p)
            + f" ({len(Q)} queries, {len(D)} documents given)"
        )
    if not rel:
        raise EmptyInputError("qrels hold no relevant (query, document) pair")
    by_doc: dict[str, list[str]] = {}
    for q in sorted(rel):
        for d in sorted(rel[q]):
            by_doc.setdefault(d, []).append(q)
    q_terms = {q: query_terms(Q[q]) for q in rel}
    out: dict[str, dict[str, float]] = {}
    for d, qids in by_doc.items():
        terms = query_terms(D[d])
        hits = Counter(t for q in qids for t in q_terms[q] & terms)
        out[d] = {t: hits[t] / len(qids) for t in sorted(terms)}
    return out


def _masked_mse(pred: Any, target: Any, mask: Any) -> Any:
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def _collate(pad_id: int):
    import torch

    def collate(rows: list[dict[str, list]]) -> dict[str, Any]:
        n = max(len(r["input_ids"]) for r in rows)
        out: dict[str, Any] = {}
        for key, fill, dtype in (
            ("input_ids", pad_id, torch.long),
            ("attention_mask", 0, torch.long),
            ("token_type_ids", 0, torch.long),
            ("targets", 0.0, torch.float32),
            ("target_mask", 0, torch.float32),
        ):
            if key in rows[0]:
                out[key] = torch.tensor(
                    [r[key] + [fill] * (n - len(r[key])) for r in rows], dtype=dtype
                )
        return out

    return collate


@contextlib.contextmanager
def _kept_rng_states(cuda: bool) -> Iterator[None]:
    """Restore the ``random``, NumPy and torch CPU RNG states (and CUDA's, when ``cuda`` or when
    CUDA is already initialised) on exit: ``Trainer`` reseeds them all with ``set_seed``."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    with_cuda = torch.cuda.is_available() and (cuda or torch.cuda.is_initialized())
    cuda_states = torch.cuda.get_rng_state_all() if with_cuda else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _trainer_class():
    from transformers import Trainer

    class DeepCTTrainer(Trainer):
        """``Trainer`` with the masked token-level MSE and a separate learning rate for the head."""

        head_lr: float | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            target, mask = inputs.pop("targets"), inputs.pop("target_mask")
            out = model(**inputs)
            loss = _masked_mse(out.logits[..., 0], target, mask)  # pre-ReLU regression
            return (loss, out) if return_outputs else loss

        def create_optimizer(self, model=None):
            opt_model = self.model if model is None else model
            if self.optimizer is None and self.head_lr is not None:
                base = {id(p) for p in opt_model.base_model.parameters()}
                decay = set(self.get_decay_parameter_names(opt_model))
                groups = []
                for is_head in (False, True):
                    for dec in (True, False):
                        params = [
                            p
                            for n, p in opt_model.named_parameters()
                            if p.requires_grad
                            and (id(p) not in base) == is_head
                            and (n in decay) == dec
                        ]
                        if params:
                            g: dict[str, Any] = {
                                "params": params,
                                "weight_decay": self.args.weight_decay if dec else 0.0,
                            }
                            if is_head:
                                g["lr"] = self.head_lr
                            groups.append(g)
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                kwargs.pop("params", None)
                self.optimizer = cls(groups, **kwargs)
            return super().create_optimizer(model)

    return DeepCTTrainer


def _check_trainer_device(wanted: Any, picked: Any) -> None:
    """Raise when ``Trainer`` would train somewhere else than the device the user asked for."""
    if picked.type != wanted.type or (wanted.index is not None and picked.index != wanted.index):
        raise ValueError(
            f"DeepCTWeighter(device={str(wanted)!r}): transformers.Trainer would train on "
            f"{str(picked)!r} (it picks the device itself: cuda:0, or each process's GPU under "
            "accelerate launch). To train on one particular GPU, expose only that one, e.g. "
            "CUDA_VISIBLE_DEVICES=1, and use device='cuda'"
        )


def _is_token_cls(name: str) -> bool:
    return name.endswith("ForTokenClassification")


def _check_token_head(cfg: Any, where: str, token_cls: bool) -> None:
    """Clear errors for a model DeepCT cannot use: no token-classification class for its type, or a
    token-classification head with other than one label."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING

    if type(cfg) not in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING:
        raise TypeError(
            f"{where}: transformers has no *ForTokenClassification model for model type "
            f"{getattr(cfg, 'model_type', '?')!r} ({type(cfg).__name__}), so DeepCT cannot put its "
            "token-weight head on it; use an encoder such as BERT, RoBERTa, DeBERTa or ModernBERT"
        )
    n = getattr(cfg, "num_labels", None)
    if token_cls and n != 1:
        raise ValueError(
            f"{where} is a token-classification model with {n} labels; DeepCT needs a one-label "
            "token regressor (a saved DeepCTWeighter) or a base encoder (which gets a fresh head)"
        )


def _with_pad_token(tok: Any) -> Any:
    """``tok``, or a copy padding with its eos (else unk) token when it has no pad token."""
    if tok.pad_token is not None:
        return tok
    fill = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if fill is None:
        raise ValueError(
            f"the tokenizer ({type(tok).__name__}) has no pad token, and no eos or unk token to pad "
            "with; set tokenizer.pad_token before building a DeepCTWeighter"
        )
    tok = copy.deepcopy(tok)  # the caller's tokenizer keeps its settings
    tok.pad_token = fill
    return tok


def _from_encoder(encoder: Any, seed: int) -> Any:
    """A one-label float32 ``AutoModelForTokenClassification`` on a copy of ``encoder``'s weights."""
    import torch
    from transformers import AutoModelForTokenClassification

    cfg = copy.deepcopy(encoder.config)
    _check_token_head(cfg, type(encoder).__name__, _is_token_cls(type(encoder).__name__))
    cfg.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForTokenClassification.from_config(cfg, dtype=torch.float32)
    src = getattr(encoder, "base_model", encoder)  # a model with a head: its encoder
    missing, unexpected = model.base_model.load_state_dict(src.state_dict(), strict=False)
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise TypeError(
            f"cannot put a token-regression head on {type(encoder).__name__}: its weights do not "
            f"match {type(model.base_model).__name__} (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return model


def _load(path: str | Path, device: Any, seed: int) -> tuple[Any, Any]:
    """(float32 one-label token regressor, tokenizer) from a directory or hub name (papercore's
    offline-first loaders: a missing path raises ``ModelNotAvailableError`` naming it)."""
    import torch
    from transformers import AutoConfig

    from papercore.models import load_model, load_tokenizer

    tok = load_tokenizer(path)  # first: names a missing path clearly
    cfg = AutoConfig.from_pretrained(str(Path(path).expanduser()))
    token_cls = any(_is_token_cls(a) for a in (cfg.architectures or []))
    _check_token_head(cfg, str(path), token_cls)
    with torch.random.fork_rng(devices=[]):  # a fresh head: seeded, global RNG untouched
        torch.manual_seed(seed)
        model = load_model(
            path,
            task="token-cls",
            dtype=torch.float32,
            device=device,
            num_labels=1,
            ignore_mismatched_sizes=not token_cls,  # another head (e.g. 2 classes) is replaced
        )
    return model, tok


class DeepCTWeighter:
    """DeepCT term weights: ``ŵ_i = ReLU(v·h_i + b)``, trained on query term recall.

    Args:
        model: a model name or local directory (a base encoder, or a saved DeepCTWeighter), an
            ``(encoder, tokenizer)`` pair, or a SentenceTransformer. A base encoder gets a fresh
            one-label head on a *copy* of its weights; a one-label ``*ForTokenClassification``
            model is used (and trained) as it is. The model is float32 (a checkpoint saved in
            float16 / bfloat16 is upcast). A tokenizer without a pad token pads with its eos (else
            unk) token (on a copy; the given tokenizer is not changed).
        max_length: tokens per text (longer texts are truncated; their tail gets no weight).
        batch_size: training and inference batch size.
        device: ``"cpu"``, ``"cuda"``, … (default: CUDA when available). Training runs where
            ``transformers.Trainer`` puts it — ``cuda:0`` (all visible GPUs with DataParallel), or
            each process's GPU under ``accelerate launch``; :meth:`fit` raises a ``ValueError`` when
            that is not ``device`` (e.g. ``"cuda:1"``): select the GPU with
            ``CUDA_VISIBLE_DEVICES=1`` and ``device="cuda"`` instead.
        query_weighter: the BM25 weighter of the query side (also fixes :attr:`vocabulary_`).
    """

    def __init__(
        self,
        model: Any,
        max_length: int = 256,
        *,
        batch_size: int = 16,
        device: str | None = None,
        seed: int = 0,
        query_weighter: BM25Weighter | None = None,
    ):
        import torch

        from papercore.models import resolve_device

        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.max_length, self.batch_size, self.seed = int(max_length), int(batch_size), seed
        self.device = resolve_device(device)
        self.fitted_ = False
        if isinstance(model, str) or hasattr(model, "__fspath__"):
            meta = Path(model).expanduser() / SIDECAR
            if meta.is_file():
                self.fitted_ = bool(json.loads(meta.read_text()).get("fitted", False))
            self.model, tokenizer = _load(model, self.device, seed)
        else:
            if isinstance(model, tuple):
                enc, tokenizer = model
            else:
                from kls.enhancement import _encoder_and_tokenizer

                enc, tokenizer = _encoder_and_tokenizer(model)
            if _is_token_cls(type(enc).__name__) and enc.config.num_labels == 1:
                self.model = enc.to(dtype=torch.float32)
            else:
                self.model = _from_encoder(enc, seed)
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                f"DeepCTWeighter needs a fast tokenizer (its offset mapping aligns tokens with "
                f"words), got {type(tokenizer).__name__}"
            )
        self.tokenizer = _with_pad_token(tokenizer)
        self.model.to(self.device).eval()
        self.query_weighter = query_weighter if query_weighter is not None else BM25Weighter()
        self._cache: dict[str, dict[str, float]] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> DeepCTWeighter:
        """Load a directory written by :meth:`save_pretrained` (the BM25 query side is refitted
        with :meth:`fit_query_weights` when needed)."""
        if not (Path(path) / SIDECAR).is_file():
            raise FileNotFoundError(f"{path} is not a saved DeepCTWeighter (no {SIDECAR})")
        meta = json.loads((Path(path) / SIDECAR).read_text())
        kwargs.setdefault("max_length", meta.get("max_length", 256))
        return cls(path, **kwargs)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model and tokenizer (a plain HF ``AutoModelForTokenClassification`` directory)."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"method": "deepct", "target": "query term recall", "fitted": self.fitted_}
        (path / SIDECAR).write_text(json.dumps({**meta, "max_length": self.max_length}, indent=2))
        return path

    # --------------------------------------------------------------- words
    def _encode(self, texts: Sequence[str], **kw: Any) -> Any:
        return self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            **kw,
        )

    def _targets(self, texts: Sequence[str], recalls: Sequence[Mapping[str, float]]):
        enc = self._encode(texts)
        rows = []
        for b, (text, qtr) in enumerate(zip(texts, recalls, strict=True)):
            spans = word_spans(text)
            wids = token_word_ids(enc["offset_mapping"][b], spans)
            row = {
                k: list(enc[k][b])
                for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in enc
            }
            row["targets"] = [0.0 if k is None else float(qtr.get(spans[k][2], 0.0)) for k in wids]
            row["target_mask"] = [0.0 if k is None else 1.0 for k in wids]
            rows.append(row)
        return enc, rows

    def token_targets(
        self, texts: Sequence[str], term_recalls: Sequence[Mapping[str, float]]
    ) -> list[list[tuple[str, float]]]:
        """The training target of every token that belongs to a word: its word's QTR (tokens
        outside every word — special tokens, punctuation — are left out: they are masked)."""
        texts = list(_texts(texts, "text", allow_empty=True).values())
        enc, rows = self._targets(texts, term_recalls)
        return [
            [
                (tok, t)
                for tok, t, m in zip(enc.tokens(b), r["targets"], r["target_mask"], strict=True)
                if m
            ]
            for b, r in enumerate(rows)
        ]

    # ----------------------------------------------------------------- fit
    def _rows(
        self,
        queries: Mapping[Any, str] | Sequence[str],
        docs: Mapping[Any, str] | Sequence[str],
        qrels: Mapping[Any, Any] | None,
    ) -> tuple[dict[str, str], dict[str, str], list[dict[str, list]]]:
        """(queries, documents, training rows): QTR targets of every document with a relevant query."""
        if qrels is None:
            Q, D, rel = _pairs(queries, docs)
        else:
            Q, D, rel = _texts(queries, "query"), _texts(docs, "document"), qrels
        qtr = query_term_recall(Q, D, rel)
        ids = sorted(qtr)
        _, rows = self._targets([D[d] for d in ids], [qtr[d] for d in ids])
        return Q, D, rows

    def fit(
        self,
        queries: Mapping[Any, str] | Sequence[str],
        docs: Mapping[Any, str] | Sequence[str],
        qrels: Mapping[Any, Any] | None = None,
        epochs: float = 1,
        lr: float = 2e-5,
        *,
        head_lr: float | None = 1e-3,
        batch_size: int | None = None,
        corpus: Mapping[Any, str] | Sequence[str] | None = None,
        seed: int | None = None,
        **training_args: Any,
    ) -> DeepCTWeighter:
        """Train the head (and the encoder) on query term recall with ``transformers.Trainer``.

        ``queries`` / ``docs``: ``{id: text}`` or sequences (ids = positions); ``qrels``:
        ``{qid: {docid}}`` (or graded). Without ``qrels``, ``queries[i]`` is relevant to
        ``docs[i]`` (equal texts are one document). The BM25 query side is fitted on ``corpus``
        (default: the documents and queries). ``head_lr=None`` trains the head at ``lr`` too;
        extra keyword arguments go to ``TrainingArguments``. ``seed`` seeds the run only: the
        caller's ``random`` / NumPy / torch RNG states are restored afterwards.
        """
        from transformers import PrinterCallback, TrainingArguments

        if epochs <= 0 or lr <= 0 or (head_lr is not None and head_lr <= 0):
            raise ValueError(f"epochs, lr and head_lr must be > 0, got {epochs}, {lr}, {head_lr}")
        Q, D, rows = self._rows(queries, docs, qrels)
        seed = self.seed if seed is None else seed
        on_cpu = self.device.type == "cpu"
        with (
            tempfile.TemporaryDirectory() as tmp,
            _kept_rng_states(cuda=self.device.type == "cuda"),
        ):
            args = TrainingArguments(
                output_dir=tmp,
                num_train_epochs=epochs,
                learning_rate=lr,
                per_device_train_batch_size=batch_size or self.batch_size,
                weight_decay=0.0,
                logging_steps=1,
                save_strategy="no",
                report_to=[],
                disable_tqdm=True,
                remove_unused_columns=False,
                seed=seed,
                use_cpu=on_cpu,
                dataloader_pin_memory=False,
                **training_args,
            )
            if not on_cpu:
                _check_trainer_device(self.device, args.device)
            trainer = _trainer_class()(
                model=self.model,
                args=args,
                train_dataset=rows,
                data_collator=_collate(self.tokenizer.pad_token_id),
            )
            trainer.head_lr = head_lr
            trainer.remove_callback(PrinterCallback)  # logs stay in trainer.state.log_history
            trainer.train()
        self.losses_ = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        self.n_train_docs_ = len(rows)
        self.model.to(self.device).eval()
        self.fitted_ = True
        self._cache.clear()
        self.fit_query_weights(
            list(corpus.values() if isinstance(corpus, Mapping) else corpus)
            if corpus is not None
            else list(D.values()) + list(Q.values())
        )
        return self

    def fit_query_weights(self, corpus: Iterable[str]) -> DeepCTWeighter:
        """Fit the BM25 query side (and :attr:`vocabulary_`) on ``corpus`` without touching the model."""
        self.query_weighter.fit(list(corpus))
        return self

    def mse(
        self,
        queries: Mapping[Any, str] | Sequence[str],
        docs: Mapping[Any, str] | Sequence[str],
        qrels: Mapping[Any, Any] | None = None,
    ) -> float:
        """The training objective (masked MSE of the pre-ReLU output vs QTR) on the given data."""
        import torch

        _, _, rows = self._rows(queries, docs, qrels)
        collate = _collate(self.tokenizer.pad_token_id)
        se = n = 0.0
        self.model.eval()
        with torch.no_grad():
            for s in range(0, len(rows), self.batch_size):
                batch = {
                    k: v.to(self.device) for k, v in collate(rows[s : s + self.batch_size]).items()
                }
                target, mask = batch.pop("targets"), batch.pop("target_mask")
                pred = self.model(**batch).logits[..., 0]
                m = float(mask.sum())
                se += float(_masked_mse(pred, target, mask)) * m  # batch mean × its token count
                n += m
        return se / max(n, 1.0)

    # ------------------------------------------------------------- outputs
    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError(
                "DeepCTWeighter: the term-weight head is untrained; call fit(queries, docs, qrels) "
                "first (or load a fitted one with DeepCTWeighter.from_pretrained)"
            )

    def _predict(self, texts: Sequence[str]):
        """Per text, for its tokens that belong to a word: (tokens, words, word ids — the index of
        the occurrence in :func:`word_spans` —, ReLU weights)."""
        import torch

        out = []
        self.model.eval()
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s : s + self.batch_size])
            enc = self._encode(chunk, padding=True, return_tensors="pt")
            inputs = {
                k: v.to(self.device)
                for k, v in enc.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            with torch.no_grad():
                w = torch.relu(self.model(**inputs).logits[..., 0]).float().cpu().numpy()
            for b, text in enumerate(chunk):
                spans = word_spans(text)
                wids = token_word_ids(enc["offset_mapping"][b].tolist(), spans)
                toks = enc.tokens(b)
                keep = [i for i, k in enumerate(wids) if k is not None]
                out.append(
                    (
                        [toks[i] for i in keep],
                        [spans[wids[i]][2] for i in keep],
                        [wids[i] for i in keep],
                        w[b, keep],
                    )
                )
        return out

    def token_weights(self, texts: Sequence[str]) -> list[list[tuple[str, float]]]:
        """``[(token, ŵ)]`` of every text for its tokens that belong to a word (special tokens and
        punctuation left out, as in :meth:`token_targets`), ŵ = ReLU(v·h + b) ≥ 0."""
        self._check_fitted()
        texts = list(_texts(texts, "text", allow_empty=True).values())
        return [
            [(t, float(v)) for t, v in zip(toks, w, strict=True)]
            for toks, _, _, w in self._predict(texts)
        ]

    def word_weights(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """``{word: weight}`` of every text: mean over the word's wordpieces, max over its
        occurrences (words: lower-cased ``\\w+`` runs, :func:`word_spans`).

        Cached per text (the model is frozen after :meth:`fit`).
        """
        self._check_fitted()
        texts = list(_texts(texts, "text", allow_empty=True).values())
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for text, (_, words, wids, w) in zip(todo, self._predict(todo), strict=True):
            occ: dict[int, list[float]] = {}  # occurrence (word id) -> its wordpieces' weights
            word_of: dict[int, str] = {}
            for word, k, v in zip(words, wids, w, strict=True):
                occ.setdefault(k, []).append(float(v))
                word_of[k] = word
            ww: dict[str, float] = {}
            for k, vs in occ.items():
                ww[word_of[k]] = max(ww.get(word_of[k], 0.0), float(np.mean(vs)))
            self._cache[text] = ww
        return [dict(self._cache[t]) for t in texts]

    def weights(self, text: str) -> dict[str, float]:
        """``{word: weight}`` of one text (the :class:`~kls.weighting.TermWeighter` protocol)."""
        return self.word_weights([text])[0]

    @property
    def vocabulary_(self) -> dict[str, int]:
        """Columns of :meth:`matrix` / :meth:`query_matrix`: the BM25 query side's vocabulary."""
        if not hasattr(self.query_weighter, "idf_"):
            raise NotFittedError(
                "DeepCTWeighter: the BM25 query side is not fitted; call fit(...) or fit_query_weights(corpus)"
            )
        return self.query_weighter.vocabulary_

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """``[n, V]`` sparse DeepCT word weights of documents over :attr:`vocabulary_`."""
        vocab = self.vocabulary_
        texts = list(texts)
        rows, cols, vals = [], [], []
        for i, ww in enumerate(self.word_weights(texts)):
            for word, v in ww.items():
                j = vocab.get(word)
                if j is not None and v > 0:
                    rows.append(i)
                    cols.append(j)
                    vals.append(v)
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(vocab)), dtype=np.float64)

    def query_matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """``[n, V]`` BM25 weights of queries (the spec's query-side fallback)."""
        self.vocabulary_  # noqa: B018 - raises when unfitted
        return self.query_weighter.matrix(list(texts))


__all__ = ["DeepCTWeighter", "query_term_recall", "query_terms", "token_word_ids", "word_spans"]
