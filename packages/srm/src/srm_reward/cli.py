"""The ``srm`` command line: build-aux → train-branch → enrich → train-rm → eval / diagnose.

Every model loads from a local path. Callable branches (retrieval, rules, APIs) are given as
``--callable DIM=module:attr`` (a callable ``(prompt, response) -> str``, or a class / factory called without
arguments that returns one); model branches are folders written by ``train-branch`` under ``--branches``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from papercore.cli import SeedOpt, VerboseOpt, clean_errors, make_app, out, setup_logging, status

app = make_app(
    "srm-reward",
    "SRM: structural reward model with side-branch feature texts (intent, entity, fact-check, style, quality).",
)

META_SUFFIX = ".meta.json"

BranchesOpt = Annotated[
    Path | None, typer.Option("--branches", help="Folder of branch folders (train-branch outputs).")
]
CallableOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--callable",
        help="DIM=module:attr callable branch (repeatable), in branch order after folders.",
    ),
]
BaseOpt = Annotated[
    Path | None, typer.Option("--base", help="Base model directory of LoRA branches.")
]
OrderOpt = Annotated[
    str | None,
    typer.Option(
        "--order", help="Comma-separated branch order (default: folders, then callables)."
    ),
]


def _import(spec: str) -> Any:
    if ":" not in spec:
        raise typer.BadParameter(f"expected module:attr, got {spec!r}")
    mod, attr = spec.split(":", 1)
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj()
    return obj


def _branches(
    branches: Path | None, callables: list[str] | None, base: Path | None, order: str | None
) -> list:
    from srm_reward.branch import BRANCH_FILE, SideBranchModel

    out_: dict[str, SideBranchModel] = {}
    shared = None
    if branches is not None:
        if not branches.is_dir():
            raise typer.BadParameter(f"--branches {branches} is not a directory")
        for d in sorted(p for p in branches.iterdir() if (p / BRANCH_FILE).is_file()):
            b = SideBranchModel.from_pretrained(
                d, base=None if base is None else str(base), backend=shared
            )
            if b.kind == "lora":
                shared = b.backend
            out_[b.name] = b
    for spec in callables or []:
        if "=" not in spec:
            raise typer.BadParameter(f"--callable expects DIM=module:attr, got {spec!r}")
        dim, target = spec.split("=", 1)
        out_[dim] = SideBranchModel(dim, generate_fn=_import(target))
    if order:
        names = [n.strip() for n in order.split(",") if n.strip()]
        from srm_reward.model import check_branch_set

        check_branch_set(sorted(names), sorted(out_))
        return [out_[n] for n in names]
    return list(out_.values())


def _read_jsonl(path: Path) -> list[dict]:
    from papercore.io import read_jsonl

    return read_jsonl(path)


@app.command("build-aux")
@clean_errors
def build_aux(
    dimension: Annotated[
        str, typer.Option("--dimension", help="Dimension name (semantic, entity, factcheck, ...).")
    ],
    seed_file: Annotated[
        Path, typer.Option("--seed-pairs", help="JSONL of {prompt, response} (the seed set).")
    ],
    generator: Annotated[
        str,
        typer.Option(
            "--generator",
            help="Model / branch folder, or module:attr callable (p, r, n, seed) -> list[str].",
        ),
    ],
    judge: Annotated[
        str, typer.Option("--judge", help="module:attr judge (p, r, candidate, dim) -> float.")
    ],
    output: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output JSONL (prompt, completion, dimension, score)."),
    ],
    n: Annotated[int, typer.Option("-n", help="Best-of-N candidates.")] = 4,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Skip examples whose best is below.")
    ] = None,
    temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Best-of-N aux texts for one dimension, selected by a judge."""
    from papercore.io import write_jsonl
    from srm_reward.branch import BRANCH_FILE, SideBranchModel
    from srm_reward.data import BestOfNSelector, build_aux_dataset

    setup_logging(verbose)
    p = Path(generator)
    if p.is_dir():
        if (p / BRANCH_FILE).is_file():
            gen: Any = SideBranchModel.from_pretrained(p)
        else:
            from papercore.models import load_model, load_tokenizer

            gen = SideBranchModel(
                dimension, model=load_model(str(p)), tokenizer=load_tokenizer(str(p))
            )
    else:
        gen = _import(generator)
    sel = BestOfNSelector(n=n, judge=_import(judge), min_score=min_score)
    with status(f"best-of-{n} for {dimension}"):
        ds, stats = build_aux_dataset(
            _read_jsonl(seed_file),
            gen,
            sel,
            dimension,
            temperature=temperature,
            seed=seed,
            return_stats=True,
        )
    write_jsonl(output, list(ds))
    out.print(f"kept {stats.kept}, skipped {stats.skipped} → {output}")


@app.command("train-branch")
@clean_errors
def train_branch(
    dimension: Annotated[str, typer.Option("--dimension")],
    data: Annotated[
        Path, typer.Option("--data", help="JSONL from build-aux (prompt, completion).")
    ],
    base: Annotated[Path, typer.Option("--base", help="Base causal LM directory.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Branch folder to write.")],
    full: Annotated[
        bool, typer.Option("--full", help="Full fine-tuning instead of a LoRA adapter.")
    ] = False,
    steps: Annotated[int, typer.Option("--steps")] = 100,
    lr: Annotated[float, typer.Option("--lr")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 128,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """SFT one side branch (loss on aux tokens only) and save its folder."""
    from papercore.models import load_model, load_tokenizer
    from srm_reward.sft import SideBranchTrainer

    setup_logging(verbose)
    rows = _read_jsonl(data)
    model, tok = load_model(str(base)), load_tokenizer(str(base))
    tr = SideBranchTrainer(
        dimension,
        model,
        tok,
        rows,
        lora=None if full else "default",
        output_dir=str(output / "_trainer"),
        seed=seed,
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
    )
    with status(f"training branch {dimension}"):
        branch = tr.train(max_new_tokens=max_new_tokens)
    branch.save_pretrained(output)
    out.print(f"branch {dimension} ({branch.kind}) → {output}")


@app.command()
@clean_errors
def enrich(
    data: Annotated[Path, typer.Option("--data", help="JSONL pairs (prompt, chosen, rejected).")],
    output: Annotated[
        Path, typer.Option("--out", "-o", help="Enriched JSONL (rendered chosen / rejected).")
    ],
    tokenizer: Annotated[
        Path, typer.Option("--tokenizer", help="The reward model's tokenizer / model directory.")
    ],
    branches: BranchesOpt = None,
    callables: CallableOpt = None,
    base: BaseOpt = None,
    order: OrderOpt = None,
    max_length: Annotated[int, typer.Option("--max-length")] = 1024,
    branch_dropout: Annotated[float, typer.Option("--branch-dropout")] = 0.0,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Run the branches over preference pairs and write the rendered RM inputs."""
    from papercore.io import write_json, write_jsonl
    from papercore.models import load_tokenizer
    from srm_reward.data import load_jsonl_pairs
    from srm_reward.model import StructuralRewardModel
    from srm_reward.render import StructuralInputRenderer

    setup_logging(verbose)
    bs = _branches(branches, callables, base, order)
    tok = load_tokenizer(str(tokenizer))
    renderer = StructuralInputRenderer(
        tok, max_length=max_length, branch_order=[b.name for b in bs]
    )
    srm = StructuralRewardModel(_NoRM(), tok, bs, renderer)
    rows, skipped = load_jsonl_pairs(data)
    with status(f"enriching {len(rows)} pairs with {[b.name for b in bs]}"):
        enriched = srm.enrich_pairs(rows, branch_dropout=branch_dropout, seed=seed)
    write_jsonl(output, enriched)
    write_json(
        Path(str(output) + META_SUFFIX),
        {"branches": srm.branch_names, "renderer": renderer.config(), "skipped": dict(skipped)},
    )
    out.print(f"{len(enriched)} pairs (skipped {dict(skipped)}) → {output}")


class _NoRM:
    """Placeholder reward model for enrichment (no scoring)."""

    class config:
        num_labels = 1
        pad_token_id = None


@app.command("train-rm")
@clean_errors
def train_rm(
    data: Annotated[Path, typer.Option("--data", help="Enriched JSONL from `srm enrich`.")],
    base: Annotated[Path, typer.Option("--base", help="Base model directory for the RM.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="RM folder to write.")],
    steps: Annotated[int, typer.Option("--steps")] = 100,
    lr: Annotated[float, typer.Option("--lr")] = 1e-4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Train the Bradley–Terry RM with TRL RewardTrainer on rendered pairs."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from papercore.models import load_tokenizer
    from srm_reward.model import SRM_FILE
    from srm_reward.trainer import SRMRewardTrainer, reward_config

    setup_logging(verbose)
    meta_path = Path(str(data) + META_SUFFIX)
    if not meta_path.is_file():
        raise typer.BadParameter(
            f"{meta_path} not found: run `srm enrich` first (it writes the branch set)"
        )
    meta = json.loads(meta_path.read_text())
    rows = _read_jsonl(data)
    tok = load_tokenizer(str(base))
    rm = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rm.config.pad_token_id = tok.pad_token_id
    ds = Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    args = reward_config(
        str(output / "_trainer"),
        max_length=meta["renderer"]["max_length"],
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        seed=seed,
    )
    tr = SRMRewardTrainer(model=rm, args=args, train_dataset=ds, processing_class=tok)
    with status(f"training RM on {len(ds)} pairs"):
        tr.train()
    tr.model.save_pretrained(str(output))
    tok.save_pretrained(str(output))
    (output / SRM_FILE).write_text(
        json.dumps(
            {"branches": meta["branches"], "kinds": {}, "renderer": meta["renderer"]}, indent=2
        )
    )
    out.print(f"RM ({len(ds)} pairs, {tr.dropped_pairs} dropped) → {output}")


def _load_srm(
    srm: Path,
    branches: Path | None,
    callables: list[str] | None,
    base: Path | None,
    order: str | None,
) -> Any:
    from srm_reward.model import SRM_FILE, StructuralRewardModel

    if not (srm / SRM_FILE).is_file():
        raise typer.BadParameter(f"{srm} is not an SRM folder ({SRM_FILE} missing)")
    trained = json.loads((srm / SRM_FILE).read_text())["branches"]
    bs = _branches(
        branches, callables, base, order or ",".join(trained) if (branches or callables) else order
    )
    return StructuralRewardModel.from_pretrained(srm, branches=bs)


@app.command("eval")
@clean_errors
def eval_(
    srm: Annotated[Path, typer.Option("--srm", help="RM folder (train-rm output).")],
    bench: Annotated[
        str, typer.Option("--bench", help="rm-bench:FILE | rewardbench:FILE | jsonl:FILE")
    ],
    branches: BranchesOpt = None,
    callables: CallableOpt = None,
    base: BaseOpt = None,
    order: OrderOpt = None,
    ablate: Annotated[
        list[str] | None, typer.Option("--ablate", help="Branch to set UNAVAILABLE (repeatable).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Results JSON.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Pairwise accuracy (overall and per subset) with latency; ``--ablate`` for leave-one-branch-out."""
    import time

    from papercore.io import write_json
    from srm_reward.data import (
        load_jsonl_pairs,
        load_rewardbench,
        load_rm_bench,
        rewardbench_scores,
        rm_bench_scores,
    )
    from srm_reward.render import UNAVAILABLE

    setup_logging(verbose)
    model = _load_srm(srm, branches, callables, base, order)
    kind, _, path = bench.partition(":")
    if kind == "rm-bench":
        rows = load_rm_bench(path)
    elif kind == "rewardbench":
        rows = load_rewardbench(path)
    elif kind == "jsonl":
        rows, _ = load_jsonl_pairs(path)
    else:
        raise typer.BadParameter(
            f"--bench must be rm-bench:FILE, rewardbench:FILE or jsonl:FILE, got {bench!r}"
        )
    ab = set(ablate or [])
    unknown = ab - set(model.branch_names)
    if unknown:
        raise typer.BadParameter(
            f"--ablate {sorted(unknown)} not among branches {model.branch_names}"
        )
    t0 = time.perf_counter()
    prompts = [r["prompt"] for r in rows]
    aux = model.aux(prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    for a in aux:
        for name in ab:
            a[name] = UNAVAILABLE
    texts = model.render(
        prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows], aux
    )
    s = model.score_texts(texts)
    n = len(rows)
    correct = [bool(s[i] > s[n + i]) for i in range(n)]
    res: dict[str, Any] = {
        "accuracy": sum(correct) / max(n, 1),
        "n": n,
        "ablate": sorted(ab),
        "latency_ms_per_pair": 1000 * (time.perf_counter() - t0) / max(n, 1),
    }
    if kind == "rm-bench":
        res.update(rm_bench_scores(rows, correct))
    elif kind == "rewardbench":
        res.update(rewardbench_scores(rows, correct))
    for k, v in res.items():
        out.print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if output is not None:
        write_json(output, res)


@app.command()
@clean_errors
def diagnose(
    srm: Annotated[Path, typer.Option("--srm", help="RM folder.")],
    data: Annotated[Path, typer.Option("--data", help="JSONL of {prompt, response} bad cases.")],
    branches: BranchesOpt = None,
    callables: CallableOpt = None,
    base: BaseOpt = None,
    order: OrderOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Per-dimension verdict rates over a set of (bad) cases."""
    from srm_reward.diagnostics import diagnose as run

    setup_logging(verbose)
    model = _load_srm(srm, branches, callables, base, order)
    rows = _read_jsonl(data)
    for i, r in enumerate(rows):
        if "prompt" not in r or "response" not in r:
            raise typer.BadParameter(f"{data} row {i} needs prompt and response")
    df = run(model, [r["prompt"] for r in rows], [r["response"] for r in rows])
    out.print(df.to_string(index=False))


@app.command()
@clean_errors
def demo(verbose: VerboseOpt = False) -> None:
    """Run the miniature demo (scalar RM vs SRM on unseen entities)."""
    from srm_reward.demo import run_demo

    setup_logging(verbose)
    r = run_demo()
    out.print(
        f"{r.method}: {r.metric} {r.value:.3f} vs {r.baseline} {r.baseline_value:.3f} (×{r.ratio:.2f})"
    )
