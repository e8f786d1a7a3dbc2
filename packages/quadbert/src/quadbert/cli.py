"""The ``quadbert`` command line: mine → train → index → search → eval, and the demo.

Data come in the BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) and every
model loads from a local path. Runs are written as TREC run files.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from papercore.cli import (
    DeviceOpt,
    OutputOpt,
    SeedOpt,
    VerboseOpt,
    clean_errors,
    console,
    make_app,
    out,
    setup_logging,
    status,
)

app = make_app(
    "quadbert",
    "QuadrupletBERT: bi-encoder retrieval trained with a quadruplet loss (hard vs simple "
    "negatives), with faiss indexing and IR evaluation.",
)

MODEL_FILE = "quadbert.json"  # beside a saved index: which encoder built it

F = TypeVar("F", bound=Callable[..., Any])


def os_errors_as_one_line(fn: F) -> F:
    """Turn any ``OSError`` (a read-only folder, a full disk, a path that is a directory) into an
    :class:`~quadbert.errors.OutputPathError`, which :func:`clean_errors` prints as one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise  # clean_errors prints these already
        except OSError as e:
            from quadbert.errors import OutputPathError

            where = f": {e.filename}" if e.filename else ""
            raise OutputPathError(f"{e.strerror or e}{where}") from e

    return wrapper  # type: ignore[return-value]


def check_output_file(path: Path, option: str = "-o/--output") -> None:
    """Fail before any work when ``path`` cannot become a file: it is a directory, or its parent
    is a file."""
    from quadbert.errors import OutputPathError

    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; expected a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{option} {path}: {parent} is a file, not a directory")
            break


def check_output_dir(path: Path, option: str = "-o/--output") -> None:
    """Fail before any work when ``path`` cannot become a directory: it is a file, or a parent is."""
    from quadbert.errors import OutputPathError

    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file; expected a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{option} {path}: {parent} is a file, not a directory")
            break


QueryPromptNameOpt = Annotated[
    str | None,
    typer.Option(
        "--query-prompt-name",
        help="Prompt name for queries (default: the model's own 'query' prompt, if any).",
    ),
]
QueryPromptOpt = Annotated[
    str | None, typer.Option("--query-prompt", help="Literal prompt prepended to queries.")
]
DocPromptNameOpt = Annotated[
    str | None,
    typer.Option(
        "--document-prompt-name",
        help="Prompt name for documents (default: the model's own 'document' prompt, if any).",
    ),
]
DocPromptOpt = Annotated[
    str | None, typer.Option("--document-prompt", help="Literal prompt prepended to documents.")
]
QueryMaxLenOpt = Annotated[
    int | None,
    typer.Option("--query-max-length", help="Token limit for queries (default: the model's)."),
]
DocMaxLenOpt = Annotated[
    int | None,
    typer.Option("--document-max-length", help="Token limit for documents (default: the model's)."),
]

ModelPathOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="SentenceTransformer directory (or a locally cached name)."),
]
DataArg = Annotated[
    Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.")
]
SplitOpt = Annotated[str, typer.Option("--split", help="Qrels split (qrels/<split>.tsv).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Encoding batch size.")]


def _load_folder(folder: Path, split: str):
    from quadbert.data import load_beir

    with status(f"loading {folder} (split {split})"):
        return load_beir(folder, split)


def _corpus(path: Path) -> dict[str, str]:
    from quadbert.data import load_corpus

    return load_corpus(path / "corpus.jsonl" if path.is_dir() else path)


@app.command()
@clean_errors
@os_errors_as_one_line
def mine(
    data: DataArg,
    output: OutputOpt = Path("quadruplets.jsonl"),
    split: SplitOpt = "train",
    hard_k: Annotated[int, typer.Option("--hard-k", help="Miner's top-k hard pool.")] = 100,
    n_per_query: Annotated[int, typer.Option("--n-per-query", help="Quadruplets per query.")] = 1,
    miner: Annotated[
        str, typer.Option("--miner", help="'bm25' or a SentenceTransformer directory.")
    ] = "bm25",
    skip_top: Annotated[
        int | None,
        typer.Option(
            "--skip-top",
            help="Best non-positive candidates never used as negatives "
            "(default: 10 with a model as miner, 0 with bm25).",
        ),
    ] = None,
    n_hard: Annotated[
        int, typer.Option("--n-hard", help="Hard negatives per row (columns hard_negative_1..N).")
    ] = 1,
    absolute_margin: Annotated[
        float | None,
        typer.Option(
            "--absolute-margin",
            help="Model miner: drop candidates scoring within this margin of the positive.",
        ),
    ] = None,
    relative_margin: Annotated[
        float | None,
        typer.Option(
            "--relative-margin",
            help="Model miner: drop candidates scoring above (1 - margin) × the positive's score.",
        ),
    ] = None,
    max_score: Annotated[
        float | None,
        typer.Option("--max-score", help="Model miner: drop candidates scoring above this."),
    ] = None,
    cross_encoder: Annotated[
        str | None,
        typer.Option("--cross-encoder", help="Model miner: CrossEncoder directory that rescores."),
    ] = None,
    sampling: Annotated[
        Literal["random", "top"],
        typer.Option(
            "--sampling", help="Model miner: random negatives from the range, or the top."
        ),
    ] = "random",
    use_faiss: Annotated[
        bool, typer.Option("--use-faiss", help="Model miner: faiss search (large corpora).")
    ] = False,
    query_prompt_name: QueryPromptNameOpt = None,
    query_prompt: QueryPromptOpt = None,
    document_prompt_name: DocPromptNameOpt = None,
    document_prompt: DocPromptOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    verbose: VerboseOpt = False,
) -> None:
    """Build (query, positive, hard negative(s), simple negative) quadruplets as JSONL."""
    from papercore.io import write_jsonl
    from quadbert.mining import build_quadruplets

    setup_logging(verbose)
    check_output_file(output)
    ds = _load_folder(data, split)
    miner_obj = miner if miner == "bm25" else _encoder(miner, device)
    extra: dict[str, Any] = {}
    if miner != "bm25":
        extra = dict(
            absolute_margin=absolute_margin,
            relative_margin=relative_margin,
            max_score=max_score,
            cross_encoder=_cross_encoder(cross_encoder, device) if cross_encoder else None,
            sampling_strategy=sampling,
            use_faiss=use_faiss,
            query_prompt_name=query_prompt_name,
            query_prompt=query_prompt,
            document_prompt_name=document_prompt_name,
            document_prompt=document_prompt,
        )
    else:
        model_only = {
            "--absolute-margin": absolute_margin,
            "--relative-margin": relative_margin,
            "--max-score": max_score,
            "--cross-encoder": cross_encoder,
            "--query-prompt-name": query_prompt_name,
            "--query-prompt": query_prompt,
            "--document-prompt-name": document_prompt_name,
            "--document-prompt": document_prompt,
            "--use-faiss": use_faiss or None,
        }
        given = [k for k, v in model_only.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} need a model as --miner, got --miner bm25")
    with status(f"mining quadruplets for {len(ds.queries)} queries ({miner})"):
        quads = build_quadruplets(
            ds.queries,
            ds.corpus,
            ds.qrels,
            hard_k=hard_k,
            n_per_query=n_per_query,
            miner=miner_obj,
            skip_top=skip_top,
            seed=seed,
            n_hard=n_hard,
            return_ids=True,
            batch_size=batch_size,
            show_progress=miner != "bm25",
            **extra,
        )
    n = write_jsonl(output, quads)
    out.print(f"wrote {n} quadruplets from {len(set(quads['query_id']))} queries to {output}")


@app.command()
@clean_errors
@os_errors_as_one_line
def train(
    model: ModelPathOpt,
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Quadruplets JSONL from `quadbert mine`.")
    ],
    output: OutputOpt = Path("quadbert-model"),
    epochs: Annotated[float, typer.Option("--epochs", help="Training epochs.")] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Per-device batch size.")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-5,
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up: ratio (<1) or steps.")] = 0.1,
    margin: Annotated[float, typer.Option("--margin", help="m1, triplet margin.")] = 0.5,
    quad_margin: Annotated[
        float, typer.Option("--quad-margin", help="m2, quadruplet margin.")
    ] = 0.25,
    quad_weight: Annotated[
        float, typer.Option("--quad-weight", help="μ, quadruplet weight.")
    ] = 1.0,
    distance: Annotated[
        Literal["euclidean", "cosine"], typer.Option("--distance", help="Distance.")
    ] = "euclidean",
    variant: Annotated[
        Literal["hard_simple", "ordered"], typer.Option("--variant", help="Quadruplet term.")
    ] = "hard_simple",
    in_batch_weight: Annotated[
        float, typer.Option("--in-batch-weight", help="ω, added in-batch MNRL term (0 = off).")
    ] = 0.0,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="BEIR folder evaluated after each epoch.")
    ] = None,
    eval_split: Annotated[
        str, typer.Option("--eval-split", help="Qrels split for --eval-data.")
    ] = "test",
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", help="'latest' (newest checkpoint in --output) or a checkpoint dir."
        ),
    ] = None,
    save_steps: Annotated[
        int | None,
        typer.Option("--save-steps", help="Checkpoint every N steps (default: each epoch)."),
    ] = None,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Stop after N steps (-1: off).")
    ] = -1,
    fp16: Annotated[bool, typer.Option("--fp16", help="Mixed precision (CUDA).")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 mixed precision.")] = False,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Fine-tune a bi-encoder with QuadrupletLoss (SentenceTransformerTrainer; `accelerate launch` works)."""
    from papercore.io import read_jsonl
    from quadbert.train import (
        as_quadruplet_dataset,
        default_training_args,
        quadruplet_columns,
        train_quadbert,
    )

    setup_logging(verbose)
    resume_arg: str | bool | None = None
    if resume == "latest":
        if not any(p.is_dir() for p in output.glob("checkpoint-*")):
            raise FileNotFoundError(f"--resume latest: {output} holds no checkpoint-* folder")
        resume_arg = True
    elif resume is not None:
        if not Path(resume).is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {resume}")
        resume_arg = resume
    check_output_dir(output)
    rows = read_jsonl(data)
    columns = quadruplet_columns(rows[0] if rows else ())
    rows = read_jsonl(data, required=columns)
    quads = as_quadruplet_dataset([{c: r[c] for c in columns} for r in rows])
    evaluation = _load_folder(eval_data, eval_split) if eval_data is not None else None
    loss_kwargs = dict(
        margin=margin,
        quad_margin=quad_margin,
        quad_weight=quad_weight,
        distance=distance,
        variant=variant,
        in_batch_weight=in_batch_weight,
    )
    from quadbert.losses import QuadrupletLoss

    QuadrupletLoss(None, **loss_kwargs)  # validate before loading the model
    extra: dict = {}
    if save_steps is not None:
        extra.update(save_strategy="steps", save_steps=save_steps)
    if evaluation is not None:
        extra["eval_strategy"] = "epoch"
    if in_batch_weight > 0:
        extra["batch_sampler"] = "no_duplicates"
    args = default_training_args(
        output,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=warmup,
        max_steps=max_steps,
        fp16=fp16,
        bf16=bf16,
        seed=seed,
        **extra,
    )
    encoder = _encoder(model, None)
    train_quadbert(
        encoder,
        quads,
        eval_data=evaluation,
        loss_kwargs=loss_kwargs,
        args=args,
        resume_from_checkpoint=resume_arg,
    )
    out.print(f"trained on {len(quads)} quadruplets; model saved to {output}")


@app.command()
@clean_errors
@os_errors_as_one_line
def index(
    model: ModelPathOpt,
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="BEIR folder or corpus.jsonl.")],
    output: OutputOpt = Path("quadbert-index"),
    index_type: Annotated[
        str,
        typer.Option(
            "--index",
            help="flat, ivf, hnsw, or a faiss index_factory string (IVF4096,PQ64 / IVF1024,SQ8 / "
            "HNSW32).",
        ),
    ] = "flat",
    nlist: Annotated[
        int | None, typer.Option("--nlist", help="IVF lists (default: min(4·√N, N/39)).")
    ] = None,
    nprobe: Annotated[
        int | None, typer.Option("--nprobe", help="IVF lists searched per query (default: 16).")
    ] = None,
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", help="HNSW graph degree M.")] = 32,
    ef_search: Annotated[int, typer.Option("--ef-search", help="HNSW efSearch.")] = 128,
    ef_construction: Annotated[
        int, typer.Option("--ef-construction", help="HNSW efConstruction.")
    ] = 40,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Documents encoded and added per step.")
    ] = 65_536,
    train_size: Annotated[
        int | None,
        typer.Option(
            "--train-size", help="Random training sample (IVF/PQ/SQ; default max(64·nlist, 65536))."
        ),
    ] = None,
    query_prompt_name: QueryPromptNameOpt = None,
    query_prompt: QueryPromptOpt = None,
    document_prompt_name: DocPromptNameOpt = None,
    document_prompt: DocPromptOpt = None,
    query_max_length: QueryMaxLenOpt = None,
    document_max_length: DocMaxLenOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Encode a corpus and save a faiss index (flat, IVF, HNSW or a factory string) to a directory.

    Query prompt and length settings are saved with the index and used by `quadbert search`.
    """
    from quadbert.index import FaissRetriever

    setup_logging(verbose)
    check_output_dir(output)
    settings = dict(
        nlist=nlist,
        nprobe=nprobe,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        ef_construction=ef_construction,
        chunk_size=chunk_size,
        train_size=train_size,
        seed=seed,
        query_prompt_name=query_prompt_name,
        query_prompt=query_prompt,
        document_prompt_name=document_prompt_name,
        document_prompt=document_prompt,
        query_max_length=query_max_length,
        document_max_length=document_max_length,
        batch_size=batch_size,
    )
    FaissRetriever(None, index_type, **settings)  # validate before loading anything
    docs = _corpus(corpus)
    encoder = _encoder(model, device)
    retriever = FaissRetriever(encoder, index_type, show_progress=True, **settings)
    retriever.index(docs)
    retriever.save(output)
    from papercore.io import write_json

    write_json(
        output / MODEL_FILE,
        {"model": str(Path(model).resolve()) if Path(model).exists() else model},
    )
    out.print(
        f"indexed {retriever.ntotal} documents ({index_type}, dim {retriever.dim}) in {output}"
    )


@app.command()
@clean_errors
@os_errors_as_one_line
def search(
    index_dir: Annotated[Path, typer.Argument(help="Directory written by `quadbert index`.")],
    queries: Annotated[Path, typer.Option("--queries", "-q", help="BEIR folder or queries.jsonl.")],
    output: OutputOpt = Path("run.trec"),
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Encoder (default: the one that built the index)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Documents per query.")] = 100,
    split: SplitOpt = "test",
    tag: Annotated[str, typer.Option("--tag", help="Run tag (last TREC column).")] = "quadbert",
    batch_size: BatchOpt = 64,
    nprobe: Annotated[
        int | None, typer.Option("--nprobe", help="IVF lists to probe (default: as indexed).")
    ] = None,
    ef_search: Annotated[
        int | None, typer.Option("--ef-search", help="HNSW efSearch (default: as indexed).")
    ] = None,
    query_prompt_name: QueryPromptNameOpt = None,
    query_prompt: QueryPromptOpt = None,
    query_max_length: QueryMaxLenOpt = None,
    mmap: Annotated[
        bool, typer.Option("--mmap", help="Memory-map the index instead of reading it into RAM.")
    ] = False,
    device: DeviceOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Search an index with queries and write a TREC run file.

    With a BEIR folder, only the queries judged in qrels/<split>.tsv are searched. Query prompts
    and max length default to those saved with the index.
    """
    from papercore.errors import MalformedInputError
    from papercore.retrieval import load_queries
    from quadbert.index import FaissRetriever, write_trec_run

    setup_logging(verbose)
    check_output_file(output)
    if queries.is_dir():
        qs = _load_folder(queries, split).queries
    else:
        qs = load_queries(queries)
    if not qs:
        raise MalformedInputError(f"no query to search in {queries}")
    if model is None:
        meta = index_dir / MODEL_FILE
        if not meta.is_file():
            raise FileNotFoundError(f"{meta} not found: pass --model")
        model = json.loads(meta.read_text(encoding="utf-8"))["model"]
    retriever = FaissRetriever.load(index_dir, _encoder(model, device), mmap=mmap)
    retriever.batch_size, retriever.show_progress = batch_size, True
    if query_prompt_name is not None or query_prompt is not None:
        retriever.query_prompt_name, retriever.query_prompt = query_prompt_name, query_prompt
    if query_max_length is not None:
        if query_max_length < 1:
            raise MalformedInputError(f"--query-max-length must be ≥ 1, got {query_max_length}")
        retriever.query_max_length = query_max_length
    retriever.set_search_params(nprobe=nprobe, ef_search=ef_search)
    run = retriever.search(qs, k=k)
    write_trec_run(run, output, tag=tag)
    out.print(
        f"searched {len(run)} queries (top-{min(k, retriever.ntotal)}); run written to {output}"
    )


@app.command("eval")
@clean_errors
@os_errors_as_one_line
def evaluate(
    run: Annotated[Path, typer.Argument(help="TREC run file.")],
    qrels: Annotated[Path, typer.Option("--qrels", help="Qrels TSV, or a BEIR folder.")],
    split: SplitOpt = "test",
    metrics: Annotated[
        str, typer.Option("--metrics", help="Comma-separated ir_measures names.")
    ] = "MRR@10,R@10,R@100,nDCG@10",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write metrics JSON.")
    ] = None,
) -> None:
    """Score a TREC run against qrels (ir_measures) and print a metric table."""
    from rich.table import Table

    from papercore.io import write_json
    from papercore.retrieval import load_qrels
    from quadbert.index import evaluate_run, read_trec_run

    if output is not None:
        check_output_file(output)
    judged = load_qrels(qrels / "qrels" / f"{split}.tsv" if qrels.is_dir() else qrels)
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if not names:
        raise ValueError("--metrics is empty; give e.g. MRR@10,R@10")
    scores = evaluate_run(read_trec_run(run), judged, names)
    table = Table(title=f"{run.name} ({len(judged)} judged queries)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in scores.items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)
    if output is not None:
        write_json(output, scores)


@app.command()
@clean_errors
@os_errors_as_one_line
def demo(seed: SeedOpt = 0, verbose: VerboseOpt = False) -> None:
    """Miniature end-to-end run: tiny BERT, synthetic corpus, QuadrupletLoss vs TripletLoss."""
    from rich.table import Table

    from quadbert.demo import run_demo

    setup_logging(verbose)
    console.print("running the quadbert demo (tiny BERT, synthetic data, CPU) ...")
    res = run_demo(seed=seed)
    table = Table(title=f"quadbert demo (test queries, seed {seed})")
    table.add_column("model")
    for m in res.details["metrics"]:
        table.add_column(m, justify="right")
    for name, row in res.details["results"].items():
        table.add_row(name, *(f"{v:.3f}" for v in row.values()))
    out.print(table)
    out.print(
        f"{res.method} vs {res.baseline}: {res.metric} {res.value:.3f} vs {res.baseline_value:.3f} "
        f"({res.ratio:.3f}×) in {res.details['seconds']:.0f} s"
    )


def _cross_encoder(path: str, device: str | None):
    from sentence_transformers import CrossEncoder

    from papercore.models import resolve_device

    if not Path(path).exists():
        raise FileNotFoundError(f"--cross-encoder: directory not found: {path}")
    with status(f"loading cross-encoder {path}"):
        return CrossEncoder(path, device=str(resolve_device(None if device == "auto" else device)))


def _encoder(model: str, device: str | None):
    from quadbert.encoders import load_encoder

    with status(f"loading {model}"):
        return load_encoder(model, device=device)


if __name__ == "__main__":  # `accelerate launch -m quadbert.cli train ...`
    app()
