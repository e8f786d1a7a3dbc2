"""The ``structkv`` command line: thin wrappers over the library, with progress bars."""

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
    make_progress,
    out,
    setup_logging,
    status,
)

app = make_app(
    "structkv",
    "StructKV: structure-aware KV-cache compression (cross-layer in-degree centrality, dynamic pivot "
    "layer, decoupled compute/memory budgets) with its baselines.",
)

METHODS_HELP = "Comma-separated: full,streaming_llm,snapkv,pyramidkv,gemfilter,fastkv,structkv."
ModelArg = Annotated[
    str, typer.Option("--model", "-m", help="Local model directory (or cached hub name).")
]


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} must be comma-separated numbers, got {text!r}") from None
    for v in vals:
        if not 0 < v <= 1:
            raise ValueError(f"{name} values must be in (0, 1], got {v}")
    return vals


def _load(model: str, dtype: str, device: str, attn: str):
    from papercore.models import load_model

    return load_model(
        model, dtype=dtype, device=None if device == "auto" else device, attn_implementation=attn
    )


def _samples(dataset: str, n: int, tokenizer, seed: int, model):
    """'recall:LEN' (integer-vocabulary model), 'niah:LEN' (text, built in) or a JSONL path."""
    from structkv.synthetic import text_tasks

    kind, _, arg = dataset.partition(":")
    if kind == "recall":
        from structkv.synthetic.tasks import RecallVocab, recall_samples

        v = getattr(model.config, "recall_vocab", None) or {}
        vocab = RecallVocab(**v) if v else RecallVocab(32, 32, 32)
        return recall_samples(n, int(arg or 256), 8, 4, vocab, seed=seed), None
    if tokenizer is None:
        raise ValueError(f"dataset {dataset!r} needs a tokenizer in the model directory")
    if kind == "niah":
        recs = text_tasks.niah_records(n, int(arg or 2048), tokenizer, seed=seed)
    else:
        path = Path(dataset)
        if not path.exists():
            raise FileNotFoundError(
                f"dataset {dataset!r}: expected recall:LEN, niah:LEN or an existing JSONL file"
            )
        recs = text_tasks.load_records(path)[:n]
    return text_tasks.records_to_samples(recs, tokenizer), tokenizer


@app.command("eval")
@clean_errors
def eval_cmd(
    model: ModelArg,
    dataset: Annotated[
        str, typer.Option(help="recall:LEN | niah:LEN (built-in RULER-style) | data.jsonl")
    ] = "niah:2048",
    methods: Annotated[
        str, typer.Option(help=METHODS_HELP)
    ] = "full,streaming_llm,snapkv,pyramidkv,gemfilter,fastkv,structkv",
    budgets: Annotated[
        str, typer.Option(help="KV budgets (fraction kept), comma-separated.")
    ] = "0.1,0.2",
    prefill_budget: Annotated[
        float, typer.Option(help="Compute budget for StructKV/FastKV.")
    ] = 0.6,
    window_size: Annotated[int, typer.Option(help="Observation window for scoring presses.")] = 32,
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 50,
    query_aware: Annotated[
        bool, typer.Option(help="Put the question inside the compressed context.")
    ] = False,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda, auto.")] = "auto",
    attn: Annotated[str, typer.Option(help="sdpa or eager (flash_attention_2 on GPU).")] = "sdpa",
    seed: SeedOpt = 0,
    output: OutputOpt = Path("structkv_eval.json"),
    verbose: VerboseOpt = False,
) -> None:
    """Compare methods on RULER-style retrieval (built-in generator) or a LongBench/RULER JSONL file."""
    from papercore.io import write_json
    from papercore.models import load_tokenizer
    from papercore.seeding import seed_everything
    from structkv.evaluate import evaluate_method
    from structkv.registry import PRESSES

    setup_logging(verbose)
    seed_everything(seed)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        if m not in PRESSES:
            raise ValueError(f"unknown method {m!r}; expected one of {sorted(PRESSES)}")
    kv = _floats(budgets, "budgets")
    with status(f"loading {model}"):
        lm = _load(model, dtype, device, attn)
        try:
            tok = load_tokenizer(model)
        except Exception:
            tok = None
    samples, tok = _samples(dataset, n, tok, seed, lm)
    decode = None if tok is None else (lambda ids: tok.decode(ids, skip_special_tokens=True))
    eos = None if tok is None else tok.eos_token_id
    rows = []
    cells = [(m, b) for m in names for b in (kv if m != "full" else [1.0])]
    with make_progress() as progress:
        task = progress.add_task("cells", total=len(cells))
        for m, b in cells:
            sub = progress.add_task(f"{m} kv={b:g}", total=len(samples))

            def track(items, _sub=sub):
                for x in items:
                    yield x
                    progress.advance(_sub)

            r = evaluate_method(
                lm,
                samples,
                m,
                b if m != "full" else 0.999999,
                prefill_budget,
                window_size,
                query_aware,
                decode,
                eos,
                progress=track,
            )
            if m == "full":
                r["kv_budget"] = 1.0
            rows.append(r)
            progress.remove_task(sub)
            progress.advance(task)
    full = next((r["accuracy"] for r in rows if r["method"] == "full"), None)
    for r in rows:
        rel = "" if not full else f" ({r['accuracy'] / full:.2f}x full)"
        out.print(
            f"{r['method']:14s} kv={r['kv_budget']:<5g} acc={r['accuracy']:.3f}{rel} "
            f"prefill_cost={r['prefill_cost']:.2f} kv_fraction={r['kv_fraction']:.3f}"
        )
    write_json(
        output, {"model": model, "dataset": dataset, "query_aware": query_aware, "results": rows}
    )
    out.print(f"wrote {output}")


@app.command("prefill")
@clean_errors
def prefill_cmd(
    model: ModelArg,
    text: Annotated[str | None, typer.Option(help="Context text (or use --input-file).")] = None,
    input_file: Annotated[Path | None, typer.Option(help="File holding the context text.")] = None,
    press: Annotated[
        str, typer.Option(help=METHODS_HELP.replace("Comma-separated: ", "One of "))
    ] = "structkv",
    kv_budget: Annotated[float, typer.Option(help="Fraction of the KV cache kept.")] = 0.1,
    prefill_budget: Annotated[float, typer.Option(help="Compute budget (StructKV/FastKV).")] = 0.6,
    window_size: Annotated[int, typer.Option(help="Observation window.")] = 32,
    question: Annotated[
        str | None, typer.Option(help="Answer this question from the compressed context.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length.")] = 32,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda, auto.")] = "auto",
    output: OutputOpt = Path("structkv_prefill.json"),
    verbose: VerboseOpt = False,
) -> None:
    """Prefill one context under a press and print its stats (pivot, per-layer tokens, cost, KV bytes)."""
    import torch

    from papercore.io import write_json
    from papercore.models import load_tokenizer
    from structkv._compat import base_model
    from structkv.evaluate import build_press
    from structkv.generation import generate, prefill

    setup_logging(verbose)
    if (text is None) == (input_file is None):
        raise ValueError("give exactly one of --text or --input-file")
    context = text if text is not None else Path(input_file).read_text()
    with status(f"loading {model}"):
        lm = _load(model, dtype, device, "sdpa")
        tok = load_tokenizer(model)
    dev = next(lm.parameters()).device
    ids = torch.tensor([tok(context)["input_ids"]], device=dev)
    n_layers = len(base_model(lm).layers)
    p = build_press(press, kv_budget, prefill_budget, n_layers, window_size)
    with status(f"prefilling {ids.shape[1]} tokens with {press}"):
        res = prefill(lm, ids, p)
    stats = {k: v for k, v in res.stats.items() if k != "trace"}
    for k in (
        "pivot_layer",
        "prefill_cost",
        "kv_fraction",
        "kv_bytes_before",
        "kv_bytes_after",
        "tokens_per_layer",
        "cache_len_per_layer",
    ):
        out.print(f"{k:20s} {stats.get(k)}")
    result = {"stats": res.stats}
    if question:
        q = torch.tensor([tok("\n" + question, add_special_tokens=False)["input_ids"]], device=dev)
        ans = generate(lm, res, q, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id)
        result["answer"] = tok.decode(ans[0], skip_special_tokens=True)
        out.print(f"answer: {result['answer']}")
    write_json(output, result)


@app.command("demo")
@clean_errors
def demo_cmd(verbose: VerboseOpt = False) -> None:
    """Run the package demo (StructKV vs full prefill on a random tiny Llama, < 1 min on CPU)."""
    from structkv.demo import run_demo

    setup_logging(verbose)
    with status("running demo"):
        r = run_demo()
    out.print(
        f"{r.method} vs {r.baseline}: {r.metric} {r.value} vs {r.baseline_value} (ratio {r.ratio:.2f})"
    )
    for k, v in r.details.items():
        out.print(f"  {k}: {v}")
