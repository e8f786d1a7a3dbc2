"""Real-scale ILP scan on a GPU (spec §4.3): detection with vLLM, signals with the base model, diagnosis.

Example (models and data from local paths)::

    python bench/gpu_smoke.py --base /models/Qwen2.5-7B --sft /models/Qwen2.5-7B-sft-gsm8k \
        --data train.jsonl --judge numeric --n 16 --backend vllm

``train.jsonl``: ``idx, prompt, target[, stage_id, task]`` — the SFT training rows, with the prompt rendered
exactly as in training. Writes detection, signals, diagnosis and a markdown report next to ``--out``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ilp_diag import (
    DiagnosisConfig,
    ILPDiagnoser,
    detect_unlearned,
    make_judge,
    records_from_rows,
    report,
    report_markdown,
)
from papercore.generation import make_backend
from papercore.io import read_jsonl
from papercore.machine import bench_parser, machine_info
from papercore.models import load_model, load_tokenizer


def main() -> None:
    p = bench_parser(__doc__, Path(__file__).parent / "results" / "gpu_smoke.json")
    p.add_argument("--base", required=True, help="base model directory")
    p.add_argument("--sft", required=True, help="SFT model directory")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--judge", default="numeric")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--backend", default="vllm")
    p.add_argument("--limit", type=int, default=None, help="first N records only")
    p.add_argument("--loss-log", type=Path, default=None, help="LossTrajectoryCallback log (JSONL)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    recs = records_from_rows(read_jsonl(a.data))[: a.limit]
    judge = make_judge(a.judge)
    det = detect_unlearned(
        make_backend(a.backend, model=a.sft), recs, judge, n=a.n, temperature=a.temperature
    )
    tok = load_tokenizer(a.sft)
    dg = ILPDiagnoser(
        load_model(a.base, dtype="bfloat16"),
        load_model(a.sft, dtype="bfloat16"),
        tok,
        judge,
        DiagnosisConfig(),
        base_tokenizer=load_tokenizer(a.base),
        n=a.n,
        temperature=a.temperature,
    )
    import pandas as pd

    log = pd.DataFrame(read_jsonl(a.loss_log)) if a.loss_log else None
    diag = dg.diagnose(dg.collect_signals(recs, loss_log=log, detection=det))
    rep = report(diag)
    rep["machine"] = machine_info()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rep, indent=1, default=str))
    a.out.with_suffix(".md").write_text(report_markdown(rep))
    print(report_markdown(rep))


main()
