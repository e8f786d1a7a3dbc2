"""Sandbox throughput: programs per second with 1 and 2 workers, on HumanEval canonical solutions.

Each run is one guarded subprocess (``python -I -S -B``, rlimits, new session, PID + network
namespaces when available, group kill). Three workloads:

* ``tests``  — ``Sandbox.run`` of each canonical solution against its hidden ``check`` (labels);
* ``calls``  — ``Sandbox.call`` of each canonical solution on its probe inputs (features);
* ``bare``   — a trivial program (``pass``): the fixed cost of one sandboxed run.

Prints the machine, one line per (workload, workers) with programs/s and the speed-up of 2 workers
over 1, and writes JSON to ``bench/results/sandbox_speed.json``.

    uv run --all-packages python packages/neurosym-cal/bench/sandbox_speed.py [--n 40]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from neurosym_cal.extrinsic import probe_inputs_for
from neurosym_cal.problems import load_humaneval
from neurosym_cal.sandbox import Sandbox
from papercore.machine import bench_parser, machine_info

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = bench_parser(__doc__, HERE / "results" / "sandbox_speed.json")
    parser.add_argument(
        "--n", type=int, default=40, help="HumanEval problems (canonical solutions)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the best is kept")
    args = parser.parse_args()

    problems = load_humaneval(limit=args.n)
    programs = [p.prompt + p.meta["canonical_solution"] for p in problems]
    test_items = [
        (prog, p.hidden_tests, p.entry_point) for prog, p in zip(programs, problems, strict=True)
    ]
    call_items = [
        (prog, p.entry_point, probe_inputs_for(p.public_view()))
        for prog, p in zip(programs, problems, strict=True)
    ]
    bare_items = [("pass\n", "pass")] * len(problems)

    load = os.getloadavg()[0]
    print(f"{machine_info(threads=None)}; load average {load:.1f} (other jobs share the cores)")
    probe = Sandbox()
    print(f"isolation: {probe.isolation}")
    rows = []
    for workload in ("bare", "tests", "calls"):
        base = None
        for workers in (1, 2):
            sb = Sandbox(timeout_s=5.0, n_workers=workers)
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                if workload == "calls":
                    results = sb.call_batch(call_items)
                    ok = sum(all(r.status == "ok" for r in res) for res in results)
                else:
                    results = sb.run_batch(bare_items if workload == "bare" else test_items)
                    ok = sum(r.passed for r in results)
                best = min(best, time.perf_counter() - t0)
            rate = len(problems) / best
            base = base or rate
            rows.append(
                {
                    "workload": workload,
                    "workers": workers,
                    "programs": len(problems),
                    "seconds": round(best, 3),
                    "programs_per_s": round(rate, 2),
                    "ratio_to_1_worker": round(rate / base, 3),
                    "ok": ok,
                }
            )
            print(
                f"{workload:>5} workers={workers}: {rate:6.1f} programs/s "
                f"({best:.2f} s for {len(problems)}, ok {ok}/{len(problems)}), "
                f"x{rate / base:.2f} vs 1 worker"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "load_average_1min": round(load, 2),
                "isolation": probe.isolation,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
