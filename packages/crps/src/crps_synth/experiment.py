"""The miniature of the paper's claim on the toy domain (:mod:`crps_synth.toy`), shared by the demo
and ``bench/bench_toy.py``.

Students (tiny Llama from config, word-level tokenizer, TRL ``SFTTrainer``, same steps budget) are
trained on

* **crps** — N examples from the full pipeline (MCTS with :class:`~crps_synth.toy.ToyExplorer`,
  visit-count pair sampling, :class:`~crps_synth.toy.RuleAnalyst` critiques and synthesis with a
  check line at the diffed pivot, verification, dedupe);
* **rs** — 10·N rejection-sampling examples: explorer samples kept when their answer verifies
  (deduplicated; as many same-distribution problems as needed to reach 10·N, so RS also sees ~10×
  more distinct problems);
* **rewrite** — N τ+ rewrites (the same pipeline, synthesis without the analysis: no check line);
* **random_pivot** — N synthesized paths with the check line at a random operation;
* **oracle** — 10·N solver-written solutions with a check line at every trap (a data ceiling);

and evaluated by exact match of the boxed answer under greedy decoding on held-out problems of the
training length (in-domain) and on longer chains (out-of-template). Chance is 0.1 (ten digits).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crps_synth.toy import (
    RuleAnalyst,
    ToyExplorer,
    ToyProblem,
    make_problems,
    solution_steps,
    trap_indices,
)

logger = logging.getLogger(__name__)

TEMPLATE = "{problem}\n"
METHODS = ("crps", "rs", "random_pivot", "rewrite", "oracle")
CHANCE = 0.1


@dataclass
class ToyExperimentConfig:
    """Settings of the miniature [inferred: sized for ~1 min per student on one CPU thread]."""

    n_problems: int = 120  # MCTS problems → N CRPS examples
    rs_factor: int = 10
    n_eval: int = 200
    min_ops: int = 3
    max_ops: int = 5
    ood_min_ops: int = 6
    ood_max_ops: int = 7
    k: int = 10
    hard_ratio: float = 0.7
    num_rollouts: int = 10
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    hidden_size: int = 96
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 192


def _resize(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """Exactly ``n`` rows: a balanced subsample (round-robin over problems) or an oversample."""
    from crps_synth.export import oversample

    if len(rows) >= n:
        rng = random.Random(seed)
        by: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by.setdefault(r["problem_id"], []).append(r)
        for v in by.values():
            rng.shuffle(v)
        out: list[dict[str, Any]] = []
        while len(out) < n:
            for v in by.values():
                if v and len(out) < n:
                    out.append(v.pop())
        return out
    return oversample(rows, n, seed)


def pipeline_rows(
    problems: list[ToyProblem], cfg: ToyExperimentConfig, pivot: str, seed: int, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the CRPS pipeline with the rule analyst; returns the SFT rows and the stage counts."""
    from crps_synth.critique import ContrastiveAnalyzer
    from crps_synth.mcts import MCTS, MCTSConfig
    from crps_synth.pipeline import CRPSPipeline, read_stage
    from crps_synth.sampling import ContrastivePairSampler
    from crps_synth.synthesize import PathSynthesizer
    from crps_synth.verify import StringVerifier

    verifier = StringVerifier()
    analyst = RuleAnalyst(pivot=pivot, seed=seed)
    pipe = CRPSPipeline(
        MCTS(ToyExplorer(), verifier, MCTSConfig(num_rollouts=cfg.num_rollouts)),
        ContrastivePairSampler(k=cfg.k, hard_ratio=cfg.hard_ratio, seed=seed),
        ContrastiveAnalyzer(analyst),
        PathSynthesizer(analyst, verifier),
        verifier,
        template=TEMPLATE,
        max_workers=1,
        seed=seed,
    )
    pipe.run([p.to_dict(f"p{i}") for i, p in enumerate(problems)], workdir)
    rows = read_stage(workdir / "export.jsonl")
    return rows, {k: v.counts for k, v in pipe.stats.items()}


def build_datasets(
    cfg: ToyExperimentConfig, seed: int, exclude: set[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The five training sets of one seed (see the module doc) and their statistics."""
    from crps_synth.export import dedupe_rows, sft_row
    from crps_synth.verify import StringVerifier

    problems = make_problems(
        cfg.n_problems, seed=seed, min_ops=cfg.min_ops, max_ops=cfg.max_ops, exclude=exclude
    )
    with tempfile.TemporaryDirectory(prefix="crps-toy-") as tmp:
        crps, stats = pipeline_rows(problems, cfg, "diff", seed, Path(tmp) / "crps")
        rewrite, _ = pipeline_rows(problems, cfg, "none", seed, Path(tmp) / "rewrite")
        rand, _ = pipeline_rows(problems, cfg, "random", seed, Path(tmp) / "random")
    n = len(crps)
    if n == 0:
        raise RuntimeError("the CRPS pipeline produced no example; the toy settings are broken")
    # rejection sampling: explorer samples, verified, deduplicated, until 10·N: the MCTS problems
    # first, then every other training problem of the grammar, up to 60 samples per problem
    explorer, verifier = ToyExplorer(), StringVerifier()
    used = exclude | {p.text for p in problems}
    extra = make_problems(
        cfg.rs_factor * n,
        seed=seed * 1000 + 1,
        min_ops=cfg.min_ops,
        max_ops=cfg.max_ops,
        exclude=used,
        strict=False,
    )
    pool = list(problems) + extra
    target = cfg.rs_factor * n
    rs: list[dict[str, Any]] = []
    for rnd in range(6):
        for i, p in enumerate(pool):
            for j in range(cfg.num_rollouts):
                steps = explorer.rollout(
                    p.text, [], 0.7, seed=((seed * 7919 + rnd) * 100003 + i) * 101 + j
                )
                ans = verifier.extract("\n".join(steps))
                if ans is not None and verifier.equivalent(ans, p.answer):
                    rs.append(sft_row(p.text, steps, f"rs{i}", "rs", TEMPLATE))
        rs = dedupe_rows(rs)
        if len(rs) >= target:
            break
    random.Random(seed).shuffle(rs)
    rs = rs[:target]
    oracle = [
        sft_row(p.text, solution_steps(p, set(trap_indices(p))), f"o{i}", "oracle", TEMPLATE)
        for i, p in enumerate(pool)
    ]
    sets = {
        "crps": crps,
        "rs": rs,
        "rewrite": _resize(rewrite, n, seed),
        "random_pivot": _resize(rand, n, seed),
        "oracle": _resize(oracle, target, seed),
    }
    stats = {
        "N": n,
        "unique": {k: len(dedupe_rows(v)) for k, v in sets.items()},
        "rows": {k: len(v) for k, v in sets.items()},
        "rs_problems": len({r["problem_id"] for r in rs}),
        "rs_target": target,
        "crps_stages": stats,
        "crps_with_check": sum("check" in r["completion"] for r in crps),
    }
    return sets, stats


def toy_tokenizer():
    from papercore.testing import build_word_tokenizer

    words = ("start", "add", "sub", "mul", "Step", "check", "recheck", "answer", "boxed")
    return build_word_tokenizer(
        words, texts=["start 1, add 2, sub 3, mul 4.\nStep 1: 1+2=3\nanswer \\boxed{3}"]
    )


def train_student(
    rows: list[dict[str, Any]], cfg: ToyExperimentConfig, seed: int, tokenizer: Any, out: Path
):
    """A tiny Llama trained with TRL SFTTrainer on ``rows`` (``cfg.steps`` steps); returns the model."""
    from crps_synth.export import rows_to_dataset
    from crps_synth.train import train_sft
    from papercore.testing import tiny_causal_lm

    model = tiny_causal_lm(
        "llama",
        tokenizer=tokenizer,
        seed=seed,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
    )
    model.train()
    trainer = train_sft(
        rows_to_dataset(rows),
        model,
        tokenizer,
        out,
        save=False,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        weight_decay=0.0,
        adam_beta2=0.98,
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, cfg.steps // 4),
        disable_tqdm=True,
        gradient_checkpointing=False,  # SFTConfig turns it on by default: pure overhead at this size
        max_length=512,
        dataloader_num_workers=0,
    )
    return trainer.model.eval()


def evaluate(
    model: Any, tokenizer: Any, problems: list[ToyProblem], *, batch_size: int = 100
) -> float:
    """Exact match of the greedy boxed answer (papercore transformers backend)."""
    from crps_synth.export import render_prompt
    from crps_synth.verify import extract_boxed
    from papercore.generation import SamplingConfig, make_backend

    backend = make_backend("transformers", model=model, tokenizer=tokenizer, batch_size=batch_size)
    longest = max(len(p.ops) for p in problems)
    cfg = SamplingConfig(n=1, temperature=0.0, max_new_tokens=16 * (2 * longest + 2))
    outs = backend.generate([render_prompt(p.text, TEMPLATE) for p in problems], cfg)
    hits = sum(extract_boxed(o[0].text) == p.answer for o, p in zip(outs, problems, strict=True))
    return hits / len(problems)


def run_seed(
    cfg: ToyExperimentConfig,
    seed: int,
    methods: tuple[str, ...] = METHODS,
    on_method: Any = None,
) -> dict[str, Any]:
    """Build the sets, train one student per method, evaluate in-domain and out-of-template.

    ``on_method(result)`` is called after each student (e.g. to save partial results).
    """
    from papercore.seeding import seed_everything, torch_threads

    eval_in = make_problems(
        cfg.n_eval, seed=10_000 + seed, min_ops=cfg.min_ops, max_ops=cfg.max_ops
    )
    eval_ood = make_problems(
        cfg.n_eval, seed=20_000 + seed, min_ops=cfg.ood_min_ops, max_ops=cfg.ood_max_ops
    )
    exclude = {p.text for p in eval_in + eval_ood}
    t0 = time.perf_counter()
    sets, stats = build_datasets(cfg, seed, exclude)
    result: dict[str, Any] = {
        "seed": seed,
        "data": stats,
        "data_seconds": time.perf_counter() - t0,
        "methods": {},
    }
    tok = toy_tokenizer()
    with torch_threads(1), tempfile.TemporaryDirectory(prefix="crps-student-") as tmp:
        for name in methods:
            t1 = time.perf_counter()
            seed_everything(seed)
            model = train_student(sets[name], cfg, seed, tok, Path(tmp) / name)
            acc_in = evaluate(model, tok, eval_in)
            acc_ood = evaluate(model, tok, eval_ood)
            result["methods"][name] = {
                "n_train": len(sets[name]),
                "acc_in": acc_in,
                "acc_ood": acc_ood,
                "seconds": time.perf_counter() - t1,
            }
            logger.info(
                "seed %d %s: in %.3f ood %.3f (%d rows)",
                seed,
                name,
                acc_in,
                acc_ood,
                len(sets[name]),
            )
            if on_method is not None:
                on_method({**result, "config": asdict(cfg)})
    result["config"] = asdict(cfg)
    return result
