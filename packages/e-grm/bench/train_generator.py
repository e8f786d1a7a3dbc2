"""Train the tiny mod-10 arithmetic generator of the pipeline bench and report its greedy accuracy per k.

    python bench/train_generator.py --seed 0     # → bench/runs/arith-chains-llama-<key>/ (cached), and a JSON

Direct accuracy should fall with k while step-by-step stays high; the numbers are written to
``bench/runs/generator-s<seed>.json`` (with the model directory).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from egrm_reward.arith import cot_prompt, direct_prompt, make_split, train_generator
from egrm_reward.extract import regex
from papercore.generation import SamplingConfig, make_backend
from papercore.machine import bench_parser, machine_info
from papercore.seeding import torch_threads

HERE = Path(__file__).parent


def greedy_accuracy(
    model_dir: Path, n_per_k: int = 60, seed: int = 999
) -> dict[str, dict[int, float]]:
    be = make_backend("transformers", model=str(model_dir), batch_size=64)
    probs = make_split(n_per_k, seed=seed)
    ex = regex(r"ans=(\d)")
    out: dict[str, dict[int, float]] = {}
    for fmt, mk, mx in (("direct", direct_prompt, 4), ("cot", cot_prompt, 40)):
        comps = be.generate(
            [mk(p) for p in probs], SamplingConfig(n=1, temperature=0, max_new_tokens=mx)
        )
        acc: dict[int, list[bool]] = {}
        for p, c in zip(probs, comps, strict=True):
            acc.setdefault(p.k, []).append(ex(c[0].text) == p.answer)
        out[fmt] = {k: sum(v) / len(v) for k, v in sorted(acc.items())}
    return out


def main() -> None:
    p = bench_parser(__doc__, HERE / "runs" / "generator.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1600)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with torch_threads(1):
        t0 = time.perf_counter()
        path = train_generator(HERE / "runs", steps=args.steps, seed=args.seed)
        train_s = time.perf_counter() - t0
        acc = greedy_accuracy(path)
        res = {
            "machine": machine_info(1),
            "seed": args.seed,
            "steps": args.steps,
            "model_dir": str(path.relative_to(HERE)),
            "train_seconds": round(train_s, 1),
            "greedy_accuracy": acc,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    (HERE / "runs" / f"generator-s{args.seed}.json").write_text(json.dumps(res, indent=2))
    for fmt, a in acc.items():
        print(fmt, " ".join(f"k={k}:{v:.2f}" for k, v in a.items()))


if __name__ == "__main__":
    main()
