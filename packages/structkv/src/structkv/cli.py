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


ATTN_CHOICES = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
TRITON_CHOICES = ("auto", "on", "off")
DtypeOpt = Annotated[
    str, typer.Option(help="auto, float32, bfloat16, float16 (auto: the checkpoint's dtype).")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]
AttnOpt = Annotated[
    str,
    typer.Option("--attn", help="Attention: sdpa, eager, flash_attention_2, flash_attention_3."),
]
TritonOpt = Annotated[
    str,
    typer.Option(
        "--use-triton",
        help="In-degree kernel: auto (Triton on CUDA when installed), on (Triton or error), off.",
    ),
]
QuestionModeOpt = Annotated[
    str,
    typer.Option(
        help="masked: the question as one block with per-layer masks; tokenwise: one token at a time."
    ),
]
ChatTemplateOpt = Annotated[
    bool,
    typer.Option(
        "--chat-template/--no-chat-template",
        help="Wrap context + question in the tokenizer's chat template (when it has one).",
    ),
]


def runtime_options(
    dtype: str, device: str, attn: str, use_triton: str, question_mode: str
) -> dict:
    """Validate the runtime flags before any model is loaded; the values the library takes.

    Raises:
        OptionError: an unknown value, or one this machine cannot honour (CUDA absent, flash-attn or
            triton not installed, FlashAttention in float32, Triton on CPU without TRITON_INTERPRET=1).
    """
    import importlib.util
    import os

    import torch

    from papercore.models import resolve_device, resolve_dtype
    from structkv.errors import OptionError
    from structkv.kernels import triton_available

    try:
        torch_dtype = resolve_dtype(dtype)
    except ValueError as exc:
        raise OptionError(f"--dtype: {exc}") from None
    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise OptionError(
            f"--device: expected auto, cpu, cuda or cuda:N (available here), got {device!r}: {exc}"
        ) from None
    if attn not in ATTN_CHOICES:
        raise OptionError(f"--attn: expected one of {', '.join(ATTN_CHOICES)}, got {attn!r}")
    if attn.startswith("flash"):
        pkg = "flash_attn" if attn == "flash_attention_2" else "flash_attn_interface"
        if dev.type != "cuda":
            raise OptionError(f"--attn {attn} needs a CUDA device, got --device {device} ({dev})")
        if importlib.util.find_spec(pkg) is None:
            raise OptionError(
                f"--attn {attn} needs the {pkg} package (pip install flash-attn), which is not "
                "installed; use --attn sdpa"
            )
        if torch_dtype == torch.float32:
            raise OptionError(f"--attn {attn} runs in bfloat16 or float16, got --dtype {dtype}")
    if use_triton not in TRITON_CHOICES:
        raise OptionError(
            f"--use-triton: expected one of {', '.join(TRITON_CHOICES)}, got {use_triton!r}"
        )
    if use_triton == "on":
        if not triton_available():
            raise OptionError("--use-triton on needs triton: pip install 'structkv[triton]'")
        if dev.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise OptionError(
                f"--use-triton on runs on CUDA (or on CPU with TRITON_INTERPRET=1 set), got device "
                f"{dev}; use --use-triton auto to fall back to PyTorch"
            )
    if question_mode not in ("masked", "tokenwise"):
        raise OptionError(f"--question-mode: expected masked or tokenwise, got {question_mode!r}")
    return {
        "dtype": dtype,
        "device": dev,
        "attn": attn,
        "use_triton": {"auto": "auto", "on": True, "off": False}[use_triton],
        "question_mode": question_mode,
    }


def _load(model: str, opts: dict):
    from papercore.models import load_model

    return load_model(
        model, dtype=opts["dtype"], device=opts["device"], attn_implementation=opts["attn"]
    )


def _triton_kwargs(method: str, use_triton) -> dict:
    """``{"use_triton": ...}`` for presses that score with the in-degree kernels, else ``{}``."""
    from dataclasses import fields

    from structkv.registry import PRESSES

    cls = PRESSES.get(method)
    if cls is None or "use_triton" not in {f.name for f in fields(cls)}:
        return {}
    return {"use_triton": use_triton}


def _samples(dataset: str, n: int, tokenizer, seed: int, model, chat_template: bool = True):
    """'recall:LEN' (integer-vocabulary model), 'niah:LEN' (text, built in) or a JSONL path
    (structkv/RULER columns or LongBench's context/input/answers/all_classes/dataset)."""
    from structkv.evaluate import records_to_eval_samples
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
        from papercore.io import read_jsonl

        recs = read_jsonl(path)[:n]
    return records_to_eval_samples(recs, tokenizer, chat_template=chat_template), tokenizer


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
    metric: Annotated[
        str,
        typer.Option(
            help="auto (LongBench's metric for each record's 'dataset', else substring), substring, "
            "qa_f1, rouge, code_sim, classification, retrieval, count."
        ),
    ] = "auto",
    chat_template: ChatTemplateOpt = True,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    attn: AttnOpt = "sdpa",
    use_triton: TritonOpt = "auto",
    question_mode: QuestionModeOpt = "masked",
    seed: SeedOpt = 0,
    output: OutputOpt = Path("structkv_eval.json"),
    verbose: VerboseOpt = False,
) -> None:
    """Compare methods on RULER-style retrieval (built-in generator) or a LongBench/RULER JSONL file.

    Records accuracy (substring match), the LongBench score, time to first token, decode latency per
    token and peak CUDA memory per method.
    """
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
    opts = runtime_options(dtype, device, attn, use_triton, question_mode)
    from structkv.metrics import metric_for

    metric_for(None, metric)  # an unknown metric fails here, before loading
    with status(f"loading {model}"):
        lm = _load(model, opts)
        try:
            tok = load_tokenizer(model)
        except Exception:
            tok = None
    samples, tok = _samples(dataset, n, tok, seed, lm, chat_template)
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
                press_kwargs=_triton_kwargs(m, opts["use_triton"]),
                question_mode=opts["question_mode"],
                metric=metric,
            )
            if m == "full":
                r["kv_budget"] = 1.0
            rows.append(r)
            progress.remove_task(sub)
            progress.advance(task)
    full = next((r["accuracy"] for r in rows if r["method"] == "full"), None)
    for r in rows:
        rel = "" if not full else f" ({r['accuracy'] / full:.2f}x full)"
        mem = r["peak_memory_bytes"]
        out.print(
            f"{r['method']:14s} kv={r['kv_budget']:<5g} acc={r['accuracy']:.3f}{rel} "
            f"score={r['score']:.3f} prefill_cost={r['prefill_cost']:.2f} "
            f"kv_fraction={r['kv_fraction']:.3f} ttft={r['ttft_s']:.3f}s "
            f"decode={_ms(r['decode_s_per_token'])} "
            f"peak_mem={'n/a (CPU)' if mem is None else f'{mem / 2**30:.2f} GiB'}"
        )
    write_json(
        output,
        {
            "model": model,
            "dataset": dataset,
            "query_aware": query_aware,
            "chat_template": chat_template,
            "metric": metric,
            "runtime": {**opts, "device": str(opts["device"])},
            "results": rows,
        },
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
    save_context: Annotated[
        Path | None,
        typer.Option(help="Save the compressed context here (answer later with `structkv ask`)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing --save-context file.")
    ] = False,
    chat_template: ChatTemplateOpt = True,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    attn: AttnOpt = "sdpa",
    use_triton: TritonOpt = "auto",
    question_mode: QuestionModeOpt = "masked",
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
    from structkv.prompts import prompt_ids
    from structkv.registry import PRESSES

    setup_logging(verbose)
    context = _context_text(text, input_file)
    if press not in PRESSES:
        raise ValueError(f"unknown press {press!r}; expected one of {sorted(PRESSES)}")
    if save_context is not None and save_context.exists() and not overwrite:
        from structkv.errors import PersistError

        raise PersistError(f"{str(save_context)!r} exists; pass --overwrite to replace it")
    opts = runtime_options(dtype, device, attn, use_triton, question_mode)
    with status(f"loading {model}"):
        lm = _load(model, opts)
        tok = load_tokenizer(model)
    dev = next(lm.parameters()).device
    ctx_ids, (q_ids,) = prompt_ids(tok, context, [question or ""], chat_template=chat_template)
    ids = torch.tensor([ctx_ids], device=dev)
    n_layers = len(base_model(lm).layers)
    p = build_press(
        press,
        kv_budget,
        prefill_budget,
        n_layers,
        window_size,
        **_triton_kwargs(press, opts["use_triton"]),
    )
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
    result = {"stats": {k: v for k, v in res.stats.items() if not isinstance(v, torch.Tensor)}}
    if save_context is not None:
        from structkv.persist import save_context as save

        result["saved_context"] = str(save(res, save_context, lm, overwrite=overwrite))
        out.print(f"saved the compressed context to {save_context}")
    if question:
        q = torch.tensor([q_ids], device=dev)
        ans = generate(
            lm,
            res,
            q,
            max_new_tokens=max_new_tokens,
            eos_token_id=tok.eos_token_id,
            question_mode=opts["question_mode"],
        )
        result["answer"] = _decode_answer(tok, ans[0].tolist())
        out.print(f"answer: {result['answer']}")
    write_json(output, result)


@app.command("trace")
@clean_errors
def trace_cmd(
    model: ModelArg,
    text: Annotated[str | None, typer.Option(help="Context text (or use --input-file).")] = None,
    input_file: Annotated[Path | None, typer.Option(help="File holding the context text.")] = None,
    top: Annotated[int, typer.Option(help="How many hub tokens to print.")] = 10,
    kv_budget: Annotated[float, typer.Option(help="Fraction of the KV cache kept.")] = 0.1,
    prefill_budget: Annotated[float, typer.Option(help="Compute budget.")] = 0.6,
    window_size: Annotated[int, typer.Option(help="Observation window.")] = 32,
    pivot_metric: Annotated[
        str, typer.Option(help="topk_jaccard, js, kl, entropy, js_running.")
    ] = ("topk_jaccard"),
    pivot_tau: Annotated[
        float | None, typer.Option(help="Threshold τ (default: calibrated per metric).")
    ] = None,
    chat_template: ChatTemplateOpt = True,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    attn: AttnOpt = "sdpa",
    output: OutputOpt = Path("structkv_trace.json"),
    verbose: VerboseOpt = False,
) -> None:
    """StructKV's view of one context: the pivot, the per-layer transition scores and the top hub tokens."""
    from dataclasses import asdict

    import torch

    from papercore.io import write_json
    from papercore.models import load_tokenizer
    from structkv.pivot import trace_context
    from structkv.presses import StructKVPress
    from structkv.prompts import prompt_ids

    setup_logging(verbose)
    context = _context_text(text, input_file)
    press = StructKVPress(
        compression_ratio=1.0 - kv_budget,
        prefill_budget=prefill_budget,
        window_size=window_size,
        pivot_metric=pivot_metric,
        pivot_tau=pivot_tau,
    )
    opts = runtime_options(dtype, device, attn, "auto", "masked")
    with status(f"loading {model}"):
        lm = _load(model, opts)
        tok = load_tokenizer(model)
    ctx_ids, _ = prompt_ids(tok, context, [""], chat_template=chat_template)
    ids = torch.tensor([ctx_ids], device=next(lm.parameters()).device)
    with status(f"tracing {ids.shape[1]} tokens"):
        tr = trace_context(lm, ids, press, top_k=top)
    out.print(f"pivot layer {tr.pivot_layer} ({tr.pivot_reason}), N = {tr.context_length}")
    for row in tr.trace:
        out.print(
            f"  layer {row['layer']:3d}  T = {row['transition']:.4f}  H = {row['entropy']:.3f}"
        )
    out.print(f"{'rank':>4} {'pos':>6}  {'token':20s} {'in-degree':>9} {'rank@pivot':>10} in P")
    for i, h in enumerate(tr.hubs, 1):
        h["text"] = tok.decode([h["token_id"]])
        out.print(
            f"{i:4d} {h['position']:6d}  {h['text']!r:20s} {h['centrality']:9.4f} "
            f"{h['pivot_rank']:10d} {'yes' if h['propagated'] else 'no'}"
        )
    write_json(output, asdict(tr))


def _context_text(text: str | None, input_file: Path | None) -> str:
    """The context of ``prefill`` / ``trace``: ``--text`` or the contents of ``--input-file`` (exactly one)."""
    if (text is None) == (input_file is None):
        raise ValueError("give exactly one of --text or --input-file")
    return text if text is not None else Path(input_file).read_text()


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f}ms/token"


def _decode_answer(tok, ids: list[int]) -> str:
    eos = tok.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    return tok.decode(ids, skip_special_tokens=True)


@app.command("ask")
@clean_errors
def ask_cmd(
    model: ModelArg,
    context_file: Annotated[
        Path, typer.Option(help="A compressed context saved by `structkv prefill --save-context`.")
    ],
    question: Annotated[list[str], typer.Option(help="A question (repeat the flag for several).")],
    max_new_tokens: Annotated[int, typer.Option(help="Answer length.")] = 32,
    chat_template: ChatTemplateOpt = True,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    attn: AttnOpt = "sdpa",
    question_mode: QuestionModeOpt = "masked",
    output: OutputOpt = Path("structkv_ask.json"),
    verbose: VerboseOpt = False,
) -> None:
    """Answer questions from a saved compressed context (compress once, ask many, across processes).

    Use the same --chat-template setting as the `prefill` that saved the context: the question closes
    the user turn the context opened.
    """
    import torch

    from papercore.io import write_json
    from papercore.models import load_tokenizer
    from structkv.generation import generate
    from structkv.persist import load_context, read_metadata
    from structkv.prompts import prompt_ids

    setup_logging(verbose)
    read_metadata(context_file)  # a missing or foreign file fails before loading the model
    opts = runtime_options(dtype, device, attn, "auto", question_mode)
    with status(f"loading {model}"):
        lm = _load(model, opts)
        tok = load_tokenizer(model)
    res = load_context(context_file, lm)
    dev = next(lm.parameters()).device
    # the question ids are those prefill would have built (the context text does not matter for them)
    _, qids = prompt_ids(tok, "", list(question), chat_template=chat_template)
    answers = []
    for q, ids in zip(question, qids, strict=True):
        ans = generate(
            lm,
            res,
            torch.tensor([ids], device=dev),
            max_new_tokens=max_new_tokens,
            eos_token_id=tok.eos_token_id,
            question_mode=opts["question_mode"],
        )
        answers.append(_decode_answer(tok, ans[0].tolist()))
        out.print(f"Q: {q}\nA: {answers[-1]}")
    write_json(
        output, {"context_file": str(context_file), "questions": list(question), "answers": answers}
    )


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
