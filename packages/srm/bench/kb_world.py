"""SRM miniature (issue 17 bench): knowledge the scalar RM cannot see, on a synthetic KB world.

World: ~500 products (brand, category, color, country), one passage each; queries ask one attribute in a
format; responses are correct, fact-swapped, style-violating or off-intent; test entities are never seen by
any RM. Branches: semantic = intent parser, entity = BM25 (papercore.retrieval.BM25Index) over the KB,
style = format checker, fact-check = a tiny LM (word-level Llama from config) SFT'd on Best-of-N texts
(noisy teacher, N=4, programmatic judge, min_score) from train entities only — its test accuracy is reported.

Methods (each RM = the same tiny Llama sequence classifier trained with TRL RewardTrainer on the same pairs):
  scalar          (prompt, response) only
  srm             all branches, learned fact-check LM
  srm_untrained   the fact-check LM at random init (SBM training removed)
  srm_oracle      fact-check = KB lookup (the ceiling)
  grm_lite        a tiny LM SFT'd to write a free-form critique ending in a verdict (sequential decoding);
                  its verdict is the score
Plus leave-one-branch-out on srm (branch → UNAVAILABLE at test time). Goal (one run): fact-swap accuracy
of srm ≥ 1.25 × scalar and ≥ 50 % of the oracle gap closed.

    python bench/kb_world.py --seeds 0 1 2            # ~15-20 min on 1 thread
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_args():
    from papercore.machine import bench_parser

    p = bench_parser(__doc__, HERE / "results" / "kb_world.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--entities", type=int, default=500)
    p.add_argument("--per-entity", type=int, default=4)
    p.add_argument("--rm-steps", type=int, default=300)
    p.add_argument("--sbm-steps", type=int, default=400)
    p.add_argument("--grm-steps", type=int, default=400)
    p.add_argument("--no-grm", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="Merge per-seed result JSONs (runs of this script) into --out instead of running.",
    )
    return p


FACT_TEMPLATE = "evidence : {context}\nresponse : {response}\nverdict :"
GRM_TEMPLATE = "query : {prompt}\nresponse : {response}\nevidence : {context}\ncritique :"


def grm_teacher(world, prompt: str, response: str) -> str:
    """The free-form critique GRM-lite is distilled from (reasoning first, verdict last)."""
    from srm_reward.synthetic import (
        IntentBranch,
        OracleFactCheck,
        StyleBranch,
        _claims,
        _ensure_sets,
    )

    _ensure_sets(world)
    intent = IntentBranch()(prompt, response)
    style = StyleBranch()(prompt, response)
    fact = OracleFactCheck(world)(prompt, response)
    claims = _claims(world, response)
    asked = intent.split(";")[0].split(":")[1].strip()
    said = claims[0][0] if claims else "none"
    good = fact == "supported" and "issue" not in style and asked == said
    return (
        f"the query asks for {asked} . the response gives {said} . the claim is {fact} . "
        f"{style.replace(' ; verdict : ', ' so style ')} . verdict : {'good' if good else 'bad'}"
    )


def tiny_lm(tok, seed: int):
    from papercore.testing.builders import tiny_causal_lm

    return tiny_causal_lm(
        "llama",
        tokenizer=tok,
        seed=seed,
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=128,
    )


def run_seed(seed: int, args, log) -> dict:
    import numpy as np

    from papercore.generation.hf import TransformersBackend
    from papercore.seeding import seed_everything
    from papercore.testing.builders import build_word_tokenizer
    from srm_reward import (
        BestOfNSelector,
        Dimension,
        SideBranchModel,
        SideBranchTrainer,
        build_aux_dataset,
    )
    from srm_reward.experiment import pair_accuracy, tiny_reward_model, train_rm
    from srm_reward.model import StructuralRewardModel
    from srm_reward.synthetic import (
        IntentBranch,
        KBEntityBranch,
        OracleFactCheck,
        StyleBranch,
        factcheck_judge,
        make_world,
        noisy_factcheck_teacher,
    )

    seed_everything(seed)
    t_seed = time.perf_counter()
    world = make_world(n_entities=args.entities, n_brands=40, seed=seed)
    texts = [
        *world.vocabulary_texts(),
        FACT_TEMPLATE,
        GRM_TEMPLATE,
        "the query asks for the response gives the claim is so style verdict good bad",
    ]
    tok = build_word_tokenizer(texts=tuple(texts))
    train = world.pairs(world.train_entities, args.per_entity, seed=seed)
    test = world.pairs(world.test_entities, args.per_entity, seed=seed + 100)
    entity = KBEntityBranch(world)
    ctx = lambda p, r: entity(p, r)  # noqa: E731
    fact_dim = Dimension("factcheck", FACT_TEMPLATE, max_aux_tokens=8, priority=5)
    res: dict = {
        "seed": seed,
        "n_train_pairs": len(train),
        "n_test_pairs": len(test),
        "n_train_entities": len(world.train_entities),
        "n_test_entities": len(world.test_entities),
    }

    # ---- fact-check SBM: Best-of-N data from train entities, then SFT (full fine-tuning of a tiny LM)
    t0 = time.perf_counter()
    seeds = [
        {"prompt": p["prompt"], "response": r} for p in train for r in (p["chosen"], p["rejected"])
    ]
    # balance the SBM's seed set: one extra fact-swapped response per pair that is not a fact pair
    rng = random.Random(seed)
    seeds += [
        {
            "prompt": p["prompt"],
            "response": world.response(p["entity"], p["attr"], p["format"], "fact", rng),
        }
        for p in train
        if p["error"] != "fact"
    ]
    sel = BestOfNSelector(n=4, judge=factcheck_judge(world), min_score=0.5)
    aux_ds, st = build_aux_dataset(
        seeds,
        noisy_factcheck_teacher(world, 0.6),
        sel,
        fact_dim,
        context_fn=ctx,
        seed=seed,
        return_stats=True,
    )
    res["bestofn"] = {"kept": st.kept, "skipped": st.skipped}
    tr = SideBranchTrainer(
        fact_dim,
        tiny_lm(tok, seed),
        tok,
        aux_ds,
        lora=None,
        output_dir=f"/tmp/srm-sbm-{seed}",
        seed=seed,
        max_steps=args.sbm_steps,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        logging_steps=args.sbm_steps,
    )
    tr.train()
    fc_model = tr.model.eval()
    res["sbm_train_s"] = time.perf_counter() - t0

    def branch_on(model):
        return SideBranchModel(
            fact_dim,
            backend=TransformersBackend(model, tok, batch_size=64),
            context_fn=ctx,
            max_new_tokens=2,
        )

    fc_learned = branch_on(fc_model)
    fc_untrained = branch_on(tiny_lm(tok, seed + 7))
    oracle = OracleFactCheck(world)
    # branch accuracy on test-entity responses (vs the KB)
    tp = [p["prompt"] for p in test for _ in (0, 1)]
    tr_ = [r for p in test for r in (p["chosen"], p["rejected"])]
    truth = [oracle(p, r) for p, r in zip(tp, tr_, strict=False)]
    for name, b in (("learned", fc_learned), ("untrained", fc_untrained)):
        out = b.generate(tp, tr_)
        log(f"  {name} fact-check outputs (first 4): {out[:4]} vs truth {truth[:4]}")
        res[f"factcheck_{name}_test_acc"] = float(
            np.mean([o == t for o, t in zip(out, truth, strict=False)])
        )
    trp = [p["prompt"] for p in train[:300] for _ in (0, 1)]
    trr = [r for p in train[:300] for r in (p["chosen"], p["rejected"])]
    res["factcheck_learned_train_acc"] = float(
        np.mean(
            [
                o == oracle(p, r)
                for o, p, r in zip(fc_learned.generate(trp, trr), trp, trr, strict=False)
            ]
        )
    )
    log(
        f"seed {seed}: fact-check LM acc train {res['factcheck_learned_train_acc']:.3f} "
        f"test {res['factcheck_learned_test_acc']:.3f} (untrained {res['factcheck_untrained_test_acc']:.3f})"
    )

    def prog(fc):
        return [
            SideBranchModel("semantic", generate_fn=IntentBranch()),
            SideBranchModel("entity", generate_fn=entity),
            fc,
            SideBranchModel("style", generate_fn=StyleBranch()),
        ]

    variants = {
        "scalar": [],
        "srm": prog(fc_learned),
        "srm_untrained": prog(fc_untrained),
        "srm_oracle": prog(SideBranchModel(fact_dim, generate_fn=oracle)),
    }
    res["methods"] = {}
    for name, branches in variants.items():
        t0 = time.perf_counter()
        srm = StructuralRewardModel(
            tiny_reward_model(tok, seed=seed), tok, branches, parallel="none"
        )
        srm.renderer.max_length = 256
        train_rm(
            srm, train, steps=args.rm_steps, seed=seed, branch_dropout=0.1 if branches else 0.0
        )
        prompts = [p["prompt"] for p in test]
        resp = [p["chosen"] for p in test] + [p["rejected"] for p in test]
        aux = srm.aux(prompts + prompts, resp)
        acc = pair_accuracy(srm, test, aux=aux)
        ids = [len(srm.renderer.encode(t)) for t in srm.render(prompts + prompts, resp, aux)]
        m = {
            "acc": acc,
            "rm_input_tokens": float(np.mean(ids)),
            "seconds": time.perf_counter() - t0,
            "decode_steps_per_pair": 2 if name in ("srm", "srm_untrained") else 0,
        }
        if name == "srm":
            m["leave_one_out"] = {
                b.name: pair_accuracy(srm, test, ablate=[b.name], aux=aux) for b in branches
            }
            # latency of the branches per pair, serial vs parallel (fresh cache each)
            from srm_reward.cache import BranchCache

            for mode in ("none", "thread"):
                srm.cache, srm.parallel = BranchCache(), mode
                t1 = time.perf_counter()
                k = min(200, len(test))
                srm.aux(prompts[:k] * 2, resp[:k] + resp[len(test) : len(test) + k])
                m[f"branch_ms_per_pair_{mode}"] = 1000 * (time.perf_counter() - t1) / k
        res["methods"][name] = m
        log(
            f"seed {seed}: {name:14s} acc {json.dumps({k: round(v, 3) for k, v in acc.items()})} "
            f"({m['seconds']:.0f}s)"
        )

    if not args.no_grm:
        t0 = time.perf_counter()
        grm_dim = Dimension("quality", GRM_TEMPLATE, max_aux_tokens=64)
        rows = [
            {
                "prompt": grm_dim.format(
                    s["prompt"], s["response"], ctx(s["prompt"], s["response"])
                ),
                "completion": " " + grm_teacher(world, s["prompt"], s["response"]),
            }
            for s in seeds
        ]
        gtr = SideBranchTrainer(
            grm_dim,
            tiny_lm(tok, seed + 3),
            tok,
            rows,
            lora=None,
            output_dir=f"/tmp/srm-grm-{seed}",
            seed=seed,
            max_steps=args.grm_steps,
            per_device_train_batch_size=32,
            learning_rate=3e-3,
            lr_scheduler_type="cosine",
            warmup_steps=20,
            logging_steps=args.grm_steps,
        )
        gtr.train()
        grm = SideBranchModel(
            grm_dim,
            backend=TransformersBackend(gtr.model.eval(), tok, batch_size=64),
            context_fn=ctx,
            max_new_tokens=48,
        )
        t1 = time.perf_counter()
        crit = grm.generate(tp, tr_)
        gen_s = time.perf_counter() - t1
        score = np.array([1.0 if c.endswith("verdict : good") else 0.0 for c in crit])
        c, r = score[0::2], score[1::2]
        right = np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))
        acc = {"all": float(right.mean())}
        for err in ("fact", "intent", "style"):
            idx = [i for i, p in enumerate(test) if p["error"] == err]
            acc[err] = float(right[idx].mean())
        ntok = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in crit]
        res["methods"]["grm_lite"] = {
            "acc": acc,
            "decode_steps_per_pair": float(np.mean(ntok)),
            "rm_input_tokens": 0.0,
            "seconds": time.perf_counter() - t0,
            "gen_ms_per_response": 1000 * gen_s / len(crit),
            "critique_exact": float(
                np.mean(
                    [x == grm_teacher(world, p, q) for x, p, q in zip(crit, tp, tr_, strict=False)]
                )
            ),
        }
        log(
            f"seed {seed}: grm_lite       acc {json.dumps({k: round(v, 3) for k, v in acc.items()})}"
        )
    res["seconds"] = time.perf_counter() - t_seed
    return res


def summarise(runs: list[dict]) -> dict:
    def ms(vals):
        return {
            "mean": statistics.fmean(vals),
            "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
            "values": vals,
        }

    methods = list(runs[0]["methods"])
    summ: dict = {"methods": {}}
    for m in methods:
        keys = runs[0]["methods"][m]["acc"].keys()
        summ["methods"][m] = {k: ms([r["methods"][m]["acc"][k] for r in runs]) for k in keys}
        summ["methods"][m]["rm_input_tokens"] = ms(
            [r["methods"][m]["rm_input_tokens"] for r in runs]
        )
        summ["methods"][m]["decode_steps_per_pair"] = ms(
            [float(r["methods"][m]["decode_steps_per_pair"]) for r in runs]
        )
    loo = runs[0]["methods"]["srm"]["leave_one_out"]
    summ["leave_one_out"] = {
        b: {k: ms([r["methods"]["srm"]["leave_one_out"][b][k] for r in runs]) for k in loo[b]}
        for b in loo
    }
    for k in (
        "factcheck_learned_test_acc",
        "factcheck_learned_train_acc",
        "factcheck_untrained_test_acc",
    ):
        summ[k] = ms([r[k] for r in runs])
    for mode in ("none", "thread"):
        summ[f"branch_ms_per_pair_{mode}"] = ms(
            [r["methods"]["srm"][f"branch_ms_per_pair_{mode}"] for r in runs]
        )
    # goals, per run and on the means
    goals = []
    for r in runs:
        f = {m: r["methods"][m]["acc"]["fact"] for m in ("scalar", "srm", "srm_oracle")}
        gap = f["srm_oracle"] - f["scalar"]
        goals.append(
            {
                "ratio_vs_scalar": f["srm"] / f["scalar"],
                "oracle_gap_closed": (f["srm"] - f["scalar"]) / gap if gap > 0 else float("nan"),
            }
        )
    summ["goals_per_seed"] = goals
    summ["ratio_vs_scalar"] = ms([g["ratio_vs_scalar"] for g in goals])
    summ["oracle_gap_closed"] = ms([g["oracle_gap_closed"] for g in goals])
    summ["goal_ratio_1_25_held"] = all(g["ratio_vs_scalar"] >= 1.25 for g in goals)
    summ["goal_gap_50_held"] = all(g["oracle_gap_closed"] >= 0.5 for g in goals)
    return summ


def table(summ: dict) -> str:
    def f(d):
        return f"{d['mean']:.3f} ± {d['std']:.3f}"

    base = summ["methods"]["scalar"]["fact"]["mean"]
    lines = [
        "| method | fact-swap acc | ratio vs scalar (fact) | style acc | intent acc | all | RM input tokens | decode steps / response |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, d in summ["methods"].items():
        lines.append(
            f"| {m} | {f(d['fact'])} | {d['fact']['mean'] / base:.2f} | {f(d['style'])} | {f(d['intent'])} | "
            f"{f(d['all'])} | {d['rm_input_tokens']['mean']:.0f} | {d['decode_steps_per_pair']['mean']:.1f} |"
        )
    lines += [
        "",
        "| srm with branch → UNAVAILABLE | fact | style | intent | all |",
        "|---|---|---|---|---|",
    ]
    for b, d in summ["leave_one_out"].items():
        lines.append(
            f"| −{b} | {f(d['fact'])} | {f(d['style'])} | {f(d['intent'])} | {f(d['all'])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_args().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("transformers", "datasets", "trl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()
    from papercore.machine import machine_info
    from papercore.seeding import torch_threads

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    runs = []
    if args.merge:
        runs = [r for f in args.merge for r in json.loads(f.read_text())["runs"]]
        args.seeds = [r["seed"] for r in runs]
    with torch_threads(args.threads):
        for s in [] if args.merge else args.seeds:
            runs.append(run_seed(s, args, log))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            partial = {
                "config": {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                },
                "runs": runs,
                "partial": True,
            }
            args.out.write_text(json.dumps(partial, indent=2))
        summ = summarise(runs)
        info = machine_info(args.threads)
    result = {
        "machine": info,
        "model": "tiny Llama from config (2 layers, hidden 64, word-level tokenizer): RMs, fact-check SBM, GRM-lite",
        "data": f"synthetic KB world, {args.entities} entities (30 % held out), {args.per_entity} pairs per entity",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds": sum(r["seconds"] for r in runs) if args.merge else time.perf_counter() - t0,
        "summary": summ,
        "runs": runs,
        "table": table(summ),
    }
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(table(summ))
    print(
        f"\nfact-check LM test acc {summ['factcheck_learned_test_acc']['mean']:.3f} "
        f"(train {summ['factcheck_learned_train_acc']['mean']:.3f}, untrained {summ['factcheck_untrained_test_acc']['mean']:.3f})"
    )
    print(
        f"fact-swap: srm / scalar = {summ['ratio_vs_scalar']['mean']:.2f} ± {summ['ratio_vs_scalar']['std']:.2f} "
        f"(goal ≥ 1.25: {'held' if summ['goal_ratio_1_25_held'] else 'NOT held'}); oracle gap closed "
        f"{summ['oracle_gap_closed']['mean']:.2f} ± {summ['oracle_gap_closed']['std']:.2f} "
        f"(goal ≥ 0.50: {'held' if summ['goal_gap_50_held'] else 'NOT held'})"
    )
    print(f"{info}; {result['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
