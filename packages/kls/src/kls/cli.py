"""The ``kls`` command line: fit / smooth / train / eval on CSV or JSONL (``text``, ``label`` columns), demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from papercore.cli import (
    OutputOpt,
    SeedOpt,
    VerboseOpt,
    clean_errors,
    make_app,
    out,
    setup_logging,
    status,
)

app = make_app(
    "kls",
    "Keyword label smoothing (KLS) and label enhancement (LE): soft labels for text classification and embedding retrieval.",
)

TrainOpt = Annotated[
    Path, typer.Argument(help="Training data: .csv/.tsv/.jsonl/.json with text and label columns.")
]
TextCol = Annotated[str, typer.Option("--text-col", help="Text column.")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Label column.")]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--keyword-source", help="reference (default, §2.0) | ctfidf | chi2 | label_names."
    ),
]
AlphaOpt = Annotated[
    float | None,
    typer.Option("--alpha", help="§2.1 mixing weight α in [0, 1); omit for the reference q(x)."),
]
TauOpt = Annotated[
    float | None, typer.Option("--tau", help="Softmax temperature τ > 0 (default per method).")
]
TopKOpt = Annotated[
    int, typer.Option("--top-k", help="Keywords per class (variants; also the listing).")
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        help="Word statistics' tokenizer: whitespace (default, the reference) | char (one token per "
        "CJK character: Chinese without a segmenter) | a transformers tokenizer name or directory.",
    ),
]
SMOOTHER_DIR = "kls-smoother"


def _read(path: Path, text_col: str, label_col: str) -> tuple[list[str], list]:
    from papercore.io import read_table

    rows = read_table(path, required=[text_col, label_col])
    if not rows:
        raise ValueError(f"{path}: no rows")
    return [str(r[text_col]) for r in rows], [r[label_col] for r in rows]


def _smoother(
    source: str, alpha: float | None, tau: float | None, top_k: int, tokenizer: str | None = None
):
    from kls.smoothing import KeywordLabelSmoother

    return KeywordLabelSmoother(source, alpha=alpha, tau=tau, top_k=top_k, tokenizer=tokenizer)


def _check_new_dir(path: Path | None, what: str) -> None:
    """Refuse an existing file or non-empty directory before any work is done."""
    from kls.errors import OutputExistsError

    if path is not None and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError(f"{what} {path} already exists (and is not an empty directory)")


@app.command()
@clean_errors
def fit(
    train: TrainOpt,
    output: OutputOpt = Path("kls-keywords.json"),
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    keyword_source: SourceOpt = "reference",
    top_k: TopKOpt = 20,
    tokenizer: TokenizerOpt = None,
    save: Annotated[
        Path | None,
        typer.Option("--save", help="Also save the fitted smoother to this (new) directory."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fit KLS on the training split and write each label's top keywords (with weights) as JSON."""
    from papercore.io import write_json

    setup_logging(verbose)
    _check_new_dir(save, "--save")
    texts, labels = _read(train, text_col, label_col)
    sm = _smoother(keyword_source, None, None, top_k, tokenizer).fit(texts, labels)
    if save is not None:
        sm.save_pretrained(save)
    write_json(
        output,
        {
            "keyword_source": keyword_source,
            "classes": sm.classes_,
            "avg_token_len": sm.avg_token_len_,
            "keywords": {str(c): sm.keywords_[c] for c in sm.classes_},
        },
    )
    saved = f" (smoother saved to {save})" if save is not None else ""
    out.print(f"{len(sm.classes_)} labels, {len(texts)} texts -> {output}{saved}")


@app.command()
@clean_errors
def smooth(
    train: Annotated[
        Path | None,
        typer.Argument(help="Training data to fit on (omit with --smoother)."),
    ] = None,
    output: OutputOpt = Path("soft.jsonl"),
    data: Annotated[
        Path | None, typer.Option("--data", help="Rows to label (default: the training file).")
    ] = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    keyword_source: SourceOpt = "reference",
    alpha: AlphaOpt = None,
    tau: TauOpt = None,
    top_k: TopKOpt = 50,
    tokenizer: TokenizerOpt = None,
    smoother: Annotated[
        Path | None,
        typer.Option(
            "--smoother", help="A saved smoother (kls fit --save) instead of fitting TRAIN."
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write every row with a ``soft_label`` column (statistics fitted on TRAIN only)."""
    from papercore.io import read_table, write_jsonl

    setup_logging(verbose)
    if (train is None) == (smoother is None):
        raise ValueError("give either TRAIN (to fit on) or --smoother DIR (a saved smoother)")
    if smoother is not None:
        from kls.smoothing import KeywordLabelSmoother

        if data is None:
            raise ValueError("--smoother needs --data: the rows to label")
        sm = KeywordLabelSmoother.from_pretrained(smoother)
    else:
        texts, labels = _read(train, text_col, label_col)
        sm = _smoother(keyword_source, alpha, tau, top_k, tokenizer).fit(texts, labels)
    rows = read_table(data or train, required=[text_col, label_col])
    soft = sm.transform([str(r[text_col]) for r in rows], [r[label_col] for r in rows])
    n = write_jsonl(
        output, ({**r, "soft_label": s.tolist()} for r, s in zip(rows, soft, strict=True))
    )
    out.print(f"{n} rows, classes {sm.classes_} -> {output}")


@app.command()
@clean_errors
def train(
    train_file: TrainOpt,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Encoder name or local path (offline first).")
    ],
    output: OutputOpt = Path("kls-model"),
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    objective: Annotated[
        str, typer.Option("--objective", help="two_head (reference) | kl | soft_ce | ce")
    ] = "two_head",
    alpha: Annotated[float, typer.Option("--alpha", help="α of the two-head loss (≥ 0).")] = 1.0,
    lam: Annotated[float, typer.Option("--lambda", help="λ of CE + λ·KL (≥ 0).")] = 1.0,
    mix_alpha: Annotated[
        float, typer.Option("--mix-alpha", help="§2.1 mixing α for kl/soft_ce.")
    ] = 0.1,
    epochs: Annotated[float, typer.Option("--epochs")] = 3.0,
    lr: Annotated[float, typer.Option("--lr")] = 5e-5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    max_length: Annotated[int, typer.Option("--max-length")] = 160,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio")] = 0.1,
    save_steps: Annotated[
        int, typer.Option("--save-steps", help="Checkpoint every N steps.")
    ] = 500,
    resume: Annotated[
        bool, typer.Option("--resume", help="Resume from the last checkpoint in OUTPUT.")
    ] = False,
    tokenizer: TokenizerOpt = None,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune a sequence classifier with KLS soft labels; saves a plain AutoModelForSequenceClassification.

    The fitted smoother is saved beside it (``OUTPUT/kls-smoother``), so ``kls eval`` can warn
    when the evaluation texts are the texts KLS was fitted on."""
    import datasets

    from kls.smoothing import KeywordLabelSmoother
    from kls.trainer import KLSTrainer, KLSTrainingArguments
    from papercore.models import load_model, load_tokenizer

    setup_logging(verbose)
    texts, labels = _read(train_file, text_col, label_col)
    sm = KeywordLabelSmoother(
        alpha=None if objective == "two_head" else mix_alpha, tokenizer=tokenizer
    )
    soft = sm.fit(texts, labels).transform(texts, labels)
    y = sm.label_index(labels)
    names = [str(c) for c in sm.classes_]
    tok = load_tokenizer(model)
    ds = datasets.Dataset.from_dict(
        {"text": texts, "label": y.tolist(), "soft_label": soft.astype("float32").tolist()}
    ).map(lambda b: tok(b["text"], truncation=True, max_length=max_length), batched=True)
    clf = load_model(
        model,
        task="seq-cls",
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    args = KLSTrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        learning_rate=lr,
        warmup_steps=warmup_ratio,
        seed=seed,
        save_steps=save_steps,
        report_to=[],
        kls_objective=objective,
        kls_alpha=alpha,
        kls_lambda=lam,
        logging_steps=50,
    )
    trainer = KLSTrainer(model=clf, args=args, train_dataset=ds, processing_class=tok)
    has_ckpt = any(output.glob("checkpoint-*")) if output.exists() else False
    trainer.train(resume_from_checkpoint=True if resume and has_ckpt else None)
    trainer.save_model(str(output))
    sm.save_pretrained(output / SMOOTHER_DIR, overwrite=True)
    out.print(f"saved a plain sequence classifier ({len(names)} labels) to {output}")


@app.command("eval")
@clean_errors
def eval_(
    model_dir: Annotated[
        Path, typer.Argument(help="A saved sequence classifier (from `kls train`).")
    ],
    data: Annotated[Path, typer.Argument(help="Evaluation data with text and label columns.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write metrics JSON here.")
    ] = None,
    text_col: TextCol = "text",
    label_col: LabelCol = "label",
    max_length: Annotated[int, typer.Option("--max-length")] = 160,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    verbose: VerboseOpt = False,
) -> None:
    """Accuracy and macro-F1 of a saved classifier on DATA."""
    from kls.errors import UnknownLabelError
    from kls.experiment import predict, scores
    from papercore.io import write_json
    from papercore.models import load_model, load_tokenizer

    setup_logging(verbose)
    texts, labels = _read(data, text_col, label_col)
    if (model_dir / SMOOTHER_DIR).is_dir():  # the leakage guard: KLS fitted on these very texts?
        from kls.smoothing import KeywordLabelSmoother

        sm = KeywordLabelSmoother.from_pretrained(model_dir / SMOOTHER_DIR)
        if sm.warn_if_fit_texts(texts, what=f"evaluation ({data})"):
            out.print(
                f"[yellow]warning: {100 * sm.fit_overlap(texts):.0f}% of {data} are training "
                "texts of the KLS smoother: these scores are not held-out scores[/yellow]"
            )
    clf = load_model(model_dir, task="seq-cls")
    tok = load_tokenizer(model_dir)
    label2id = {str(k): int(v) for k, v in clf.config.label2id.items()}
    unknown = sorted({str(y) for y in labels} - set(label2id))
    if unknown:
        raise UnknownLabelError(
            f"labels {unknown} are not labels of the model; it knows {sorted(label2id)}"
        )
    with status("predicting"):
        pred = predict(clf, tok, texts, batch_size=batch_size, max_length=max_length)
    res = {**scores([label2id[str(y)] for y in labels], pred.tolist()), "n": len(texts)}
    if output:
        write_json(output, res)
    out.print(f"accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  (n = {len(texts)})")


@app.command()
@clean_errors
def demo(
    task: Annotated[
        str,
        typer.Argument(help="cls (classification miniature, default) | ret (retrieval miniature)."),
    ] = "cls",
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Run a miniature: cls = KLS vs hard labels on a tiny BERT; ret = MNRL vs MNRL+KLS vs MNRL+LE
    on the packaged MiniLM (synthetic retrieval, one CPU thread, under a minute)."""
    from rich.table import Table

    from kls.demo import run_classification_demo

    setup_logging(verbose)
    if task == "ret":
        _demo_ret(seed)
        return
    if task != "cls":
        raise ValueError(f"unknown demo {task!r}; available: cls, ret")
    with status("training tiny BERTs (CE, KLS)"):
        res = run_classification_demo(seed=seed)
    table = Table(title="kls demo: 10:1 imbalanced synthetic, tiny BERT")
    for col in ("method", "accuracy", "macro-F1", "s/step"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, r in res.items():
        table.add_row(
            m, f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}", f"{r['seconds_per_step']:.3f}"
        )
    out.print(table)


def _demo_ret(seed: int) -> None:
    from rich.table import Table

    from kls.demo import RETRIEVAL_METRICS, run_retrieval_demo

    with status("fine-tuning MiniLM (MNRL, MNRL+KLS, MNRL+LE) on one thread"):
        res = run_retrieval_demo(seed=seed)
    table = Table(title="kls demo ret: synthetic retrieval (unseen entities), all-MiniLM-L6-v2")
    for col in ("method", *RETRIEVAL_METRICS, "seconds"):
        table.add_column(col, justify="left" if col == "method" else "right")
    names = {"zero-shot": "zero-shot", "mnrl": "MNRL", "mnrl+kls": "MNRL + KLS"}
    names |= {"mnrl+le": "MNRL + LE (BM25 prior)", "mnrl+le-deepct": "MNRL + LE (DeepCT prior)"}
    for m, r in res.items():
        secs = f"{r['seconds']:.1f}" if "seconds" in r else "-"
        table.add_row(names.get(m, m), *(f"{r[k]:.4f}" for k in RETRIEVAL_METRICS), secs)
    out.print(table)


@app.command("smooth-ret")
@clean_errors
def smooth_ret(
    corpus: Annotated[Path, typer.Option("--corpus", help="BEIR corpus.jsonl (_id, title, text).")],
    groups: Annotated[
        Path, typer.Option("--train", help="Groups: anchor, positive, negative_1..N columns.")
    ],
    output: OutputOpt = Path("soft-groups.jsonl"),
    alpha: Annotated[float, typer.Option("--alpha")] = 0.2,
    tau: Annotated[float, typer.Option("--tau")] = 0.5,
    doc_top_k: Annotated[int, typer.Option("--doc-top-k")] = 10,
    verbose: VerboseOpt = False,
) -> None:
    """KLS soft labels over retrieval groups (§2.3): adds a ``label`` column (1 + N floats)."""
    import datasets

    from kls.retrieval_smoothing import RetrievalKeywordSmoother
    from papercore.io import read_table, write_jsonl
    from papercore.retrieval import load_corpus

    setup_logging(verbose)
    rows = read_table(groups, required=["anchor", "positive"])
    ds = datasets.Dataset.from_list(rows)
    ds = RetrievalKeywordSmoother(alpha, tau, doc_top_k).fit(load_corpus(corpus)).to_dataset(ds)
    n = write_jsonl(output, ds.to_list())
    out.print(f"{n} groups -> {output}")


@app.command()
@clean_errors
def enhance(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Retriever checkpoint (local directory): the LE model g copies it.",
        ),
    ],
    corpus: Annotated[Path, typer.Option("--corpus", help="BEIR corpus.jsonl (_id, title, text).")],
    groups: Annotated[
        Path, typer.Option("--train", help="Groups: anchor, positive, negative_1..N columns.")
    ],
    output: OutputOpt = Path("enhanced-groups.jsonl"),
    weighter: Annotated[
        str,
        typer.Option(
            "--weighter",
            help="Term prior: bm25 | tfidf | deepct (trained on the groups) | auto (deepct from 1k groups).",
        ),
    ] = "bm25",
    alpha: Annotated[float, typer.Option("--alpha", help="Mixing weight α in [0, 1).")] = 0.2,
    tau: Annotated[float, typer.Option("--tau", help="τ_LE > 0 (cosine scale).")] = 0.1,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs of g.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 2e-5,
    max_length: Annotated[int, typer.Option("--max-length")] = 128,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Label enhancement (§2.4): train g on the groups' hard labels, write a ``label`` column (1 + N floats)."""
    import datasets

    from kls.enhancement import WEIGHTERS, LabelEnhancer
    from papercore.io import read_table, write_jsonl
    from papercore.retrieval import load_corpus
    from papercore.seeding import seed_everything

    setup_logging(verbose)
    if weighter not in WEIGHTERS:
        raise ValueError(f"--weighter must be one of {', '.join(WEIGHTERS)}, got {weighter!r}")
    if not Path(model).is_dir():
        raise FileNotFoundError(f"model directory not found: {model}")
    rows = read_table(groups, required=["anchor", "positive"])
    if not rows:
        raise ValueError(f"{groups}: no groups")
    docs = load_corpus(corpus)
    seed_everything(seed)
    ds = datasets.Dataset.from_list(rows)
    le = LabelEnhancer(
        model,
        weighter=weighter,
        alpha=alpha,
        tau=tau,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
    )
    with status(f"training the LE model on {len(rows)} groups"):
        ds = le.fit(ds, corpus=docs).to_dataset(ds)
    n = write_jsonl(output, ds.to_list())
    out.print(f"{n} groups -> {output}")
