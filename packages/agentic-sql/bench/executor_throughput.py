"""Throughput of simple queries through the sandbox vs raw sqlite3 (no sandbox), measured in one run.

    uv run --locked python packages/agentic-sql/bench/executor_throughput.py [--n 3000]

Databases: the synthetic suite (4 SQLite databases, 30/20/120 rows). Queries: single-table filters,
counts and point lookups, all distinct (so neither sqlglot's check cache nor SQLite's statement
cache is hit). Each method runs the same number of queries; worker start-up is excluded and printed
separately. A second workload of CPU-bound queries (a 20,000-row recursive CTE with GROUP BY)
shows where a second worker pays off. Prints one line per method with its ratio to raw sqlite3 on
one core, and writes bench/results/executor_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from agentic_sql.data import make_synthetic_task_suite
from agentic_sql.executor import SQLiteExecutor
from agentic_sql.synth import DOMAINS
from papercore.machine import machine_info

RESULTS = Path(__file__).parent / "results"


def make_queries(n: int, offset: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        d = DOMAINS[i % len(DOMAINS)]
        k = offset + i
        kind = (i // len(DOMAINS)) % 3
        if kind == 0:
            sql = f"SELECT name FROM {d.persons} WHERE {d.p_num} > {k % 100 + 1000 * (k // 100)}"
        elif kind == 1:
            sql = f"SELECT COUNT(*) FROM {d.items} WHERE {d.i_num} < {k}"
        else:
            sql = f"SELECT {d.i_name}, {d.i_group} FROM {d.items} WHERE id = {k}"
        out.append((d.db_id, sql))
    return out


_CONNS: dict[str, sqlite3.Connection] = {}


def _raw_one(args: tuple[str, str, str]) -> int:
    root, db, sql = args
    conn = _CONNS.get(db)
    if conn is None:
        conn = _CONNS[db] = sqlite3.connect(f"{root}/{db}/{db}.sqlite")
    return len(conn.execute(sql).fetchall())


def raw_sqlite(root: Path, queries, workers: int) -> float:
    items = [(str(root), db, sql) for db, sql in queries]
    if workers == 1:
        t0 = time.perf_counter()
        for it in items:
            _raw_one(it)
        return time.perf_counter() - t0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_raw_one, items[: workers * 4], chunksize=1)  # warm up
        t0 = time.perf_counter()
        pool.map(_raw_one, items, chunksize=16)
        return time.perf_counter() - t0


def sandbox(
    root: Path, queries, isolation: str, workers: int, batched: bool
) -> tuple[float, float]:
    t_start = time.perf_counter()
    with SQLiteExecutor(
        root, isolation=isolation, max_workers=max(workers, 1), timeout_s=5.0
    ) as ex:
        ex.execute_many([(db, "SELECT 1") for db, _ in queries[: workers * 2]])  # start workers
        startup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        if batched:
            res = ex.execute_many(queries, max_workers=workers)
        else:
            res = [ex.execute(db, sql) for db, sql in queries]
        elapsed = time.perf_counter() - t0
    bad = [r.error for r in res if not r.ok]
    assert not bad, bad[:3]
    return elapsed, startup


def cached_gold(root: Path, queries) -> float:
    golds = queries[:50]
    with SQLiteExecutor(root, isolation="thread", max_workers=1) as ex:
        for db, sql in golds:
            ex.execute_cached(db, sql)
        t0 = time.perf_counter()
        for i in range(len(queries)):
            db, sql = golds[i % len(golds)]
            ex.execute_cached(db, sql)
        return time.perf_counter() - t0


def make_heavy_queries(n: int, offset: int) -> list[tuple[str, str]]:
    """CPU-bound queries: a 20,000-row recursive CTE grouped and filtered (distinct by a constant)."""
    return [
        (
            DOMAINS[i % len(DOMAINS)].db_id,
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 20000) "
            f"SELECT x % 7, COUNT(*) FROM r GROUP BY 1 HAVING COUNT(*) > {offset + i}",
        )
        for i in range(n)
    ]


def run_workload(root: Path, make, n: int, repeats: int) -> list[dict]:
    methods = [
        ("raw sqlite3, 1 process", lambda q: (raw_sqlite(root, q, 1), None)),
        ("raw sqlite3, 2 processes", lambda q: (raw_sqlite(root, q, 2), None)),
        ("sandbox thread, execute() loop", lambda q: sandbox(root, q, "thread", 1, False)),
        ("sandbox thread, execute_many 2 workers", lambda q: sandbox(root, q, "thread", 2, True)),
        ("sandbox process, execute() loop", lambda q: sandbox(root, q, "process", 1, False)),
        ("sandbox process, execute_many 1 worker", lambda q: sandbox(root, q, "process", 1, True)),
        ("sandbox process, execute_many 2 workers", lambda q: sandbox(root, q, "process", 2, True)),
    ]  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    startups: dict[str, list[float]] = {name: [] for name, _ in methods}
    offset = 0
    for _ in range(repeats):  # rounds interleave the methods so load drifts hit all of them
        for name, fn in methods:
            offset += 10 * n
            el, st = fn(make(n, offset))
            times[name].append(el)
            if st is not None:
                startups[name].append(st)
    rows = []
    for name, _ in methods:
        el = statistics.median(times[name])
        rows.append(
            {
                "method": name,
                "queries": n,
                "seconds_median": el,
                "qps": n / el,
                "qps_all_rounds": [n / t for t in times[name]],
                "startup_s": statistics.median(startups[name]) if startups[name] else None,
            }
        )
    for r in rows:
        r["ratio_vs_raw_1"] = r["qps"] / rows[0]["qps"]
    return rows


# ----------------------------------------------------------------------------------------------
# --workload scale: the training-time paths of issue 21 §4 (old path vs new path, same run)
# ----------------------------------------------------------------------------------------------

SLOW_GOLD = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
    "SELECT count(*) FROM (SELECT x FROM r LIMIT 1000000000) WHERE {k} >= 0"
)


def scale_gold(root: Path, ds, n_slow: int, policy_timeout: float, epochs: int) -> dict:
    """Resets over a dataset whose gold queries include ``n_slow`` that time out.

    Old path: no pre-run, timeouts not cached (``retry_timeouts=True``): every reset of such a row
    runs its gold query to the gold timeout (4 x the policy's), one at a time. New path:
    ``make_environment_factory(dataset=..., on_gold_failure="flag")`` pre-runs every distinct gold
    query once on the worker pool, then resets hit the cache.
    """
    from agentic_sql.env import make_environment_factory
    from agentic_sql.rewards import GoldCache

    rows = [{"db_id": r["db_id"], "gold_sql": r["gold_sql"]} for r in ds]
    slow_rows = [
        {"db_id": rows[i]["db_id"], "gold_sql": SLOW_GOLD.format(k=i % 3)} for i in range(n_slow)
    ]
    data = rows + slow_rows
    out = {"rows": len(data), "distinct_gold": len({(r["db_id"], r["gold_sql"]) for r in data})}
    out["slow_rows"], out["policy_timeout_s"], out["epochs"] = n_slow, policy_timeout, epochs
    with SQLiteExecutor(root, timeout_s=policy_timeout, isolation="process", max_workers=2) as ex:
        ex.execute_many([(rows[0]["db_id"], "SELECT 1")] * 2)  # start the workers
        factory = make_environment_factory(executor=ex, max_turns=3)
        factory.gold_cache = GoldCache(ex, retry_timeouts=True)  # the old behaviour
        env = factory()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for r in data:
                env.reset(**r)
        out["old_resets_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        factory = make_environment_factory(
            executor=ex, max_turns=3, dataset=data, on_gold_failure="flag"
        )
        out["new_prerun_s"] = time.perf_counter() - t0
        env = factory()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for r in data:
                env.reset(**r)
        out["new_resets_s"] = time.perf_counter() - t0
        out["new_failed_rows"] = factory.gold_report.n_failed_rows
    out["speedup"] = out["old_resets_s"] / (out["new_prerun_s"] + out["new_resets_s"])
    return out


def scale_turns(root: Path, ds, make, batch: int, repeats: int) -> dict:
    """One turn of ``batch`` episodes: each environment's query one after the other (old text
    rollout: ``env.execute_sql`` in a loop) vs one ``execute_many`` for the turn (new)."""
    from agentic_sql.env import make_environment_factory
    from agentic_sql.rollout import _execute_batch

    rows = [{"db_id": r["db_id"], "gold_sql": r["gold_sql"]} for r in ds][:batch]
    old, new = [], []
    with SQLiteExecutor(root, timeout_s=5.0, isolation="process", max_workers=2) as ex:
        ex.execute_many([(rows[0]["db_id"], "SELECT 1")] * 2)
        factory = make_environment_factory(executor=ex, max_turns=1000, dataset=rows)
        envs = [factory() for _ in rows]
        for k in range(repeats):
            for e, r in zip(envs, rows, strict=True):
                e.reset(**r)
            qs = _queries_for(envs, make, 10_000 * (2 * k + 1))
            t0 = time.perf_counter()
            for e, q in zip(envs, qs, strict=True):
                e.execute_sql(q)
            old.append(time.perf_counter() - t0)
            qs = _queries_for(envs, make, 10_000 * (2 * k + 2))
            t0 = time.perf_counter()
            res = _execute_batch(list(zip(envs, qs, strict=True)))
            for e, q in zip(envs, qs, strict=True):
                e._execute_sql(q, res[(id(e), q)])
            new.append(time.perf_counter() - t0)
    o, n = statistics.median(old), statistics.median(new)
    return {"batch": len(envs), "old_s": o, "new_s": n, "speedup": o / n, "repeats": repeats}


def _queries_for(envs: list, make, offset: int) -> list[str]:
    """One distinct query per environment, on that environment's database."""
    pool: dict[str, list[str]] = {}
    for db, sql in make(len(envs) * len(DOMAINS), offset):
        pool.setdefault(db, []).append(sql)
    return [pool[e.db_id].pop() for e in envs]


def scale_observation(root: Path) -> dict:
    from agentic_sql.executor import format_observation

    wide = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 60) SELECT "
        + ", ".join(f"printf('%.100c', 'x') AS c{j}" for j in range(1000))
        + " FROM r"
    )
    db = sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    with SQLiteExecutor(root, isolation="thread") as ex:
        res = ex.execute(db, wide)
    return {
        "columns": len(res.columns),
        "rows": len(res.rows),
        "chars_uncapped": len(format_observation(res, max_cols=None, max_chars=None)),
        "chars_default_caps": len(format_observation(res)),
    }


def run_scale(args: argparse.Namespace) -> None:
    t_all = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="agentic-sql-bench-"))
    ds, _ = make_synthetic_task_suite(out_dir=root, with_schema=False)
    gold = scale_gold(root, ds, n_slow=args.slow_rows, policy_timeout=0.25, epochs=2)
    turns = {
        "simple": scale_turns(root, ds, make_queries, args.batch, args.repeats),
        "heavy": scale_turns(root, ds, make_heavy_queries, args.batch, args.repeats),
    }
    obs = scale_observation(root)
    machine = f"{machine_info()}, SQLite {sqlite3.sqlite_version}"
    load = os.getloadavg()
    print(f"machine: {machine}; load average at the end {load[0]:.1f} (shared machine)")
    print(
        f"== gold pre-run: {gold['rows']} rows ({gold['distinct_gold']} distinct gold, "
        f"{gold['slow_rows']} rows whose gold times out at {4 * gold['policy_timeout_s']:g} s), "
        f"{gold['epochs']} epochs of resets"
    )
    print(f"{'old: gold re-run at every reset':42s} {gold['old_resets_s']:8.2f} s")
    print(
        f"{'new: parallel pre-run + cached resets':42s} "
        f"{gold['new_prerun_s'] + gold['new_resets_s']:8.2f} s   (pre-run "
        f"{gold['new_prerun_s']:.2f} s, resets {gold['new_resets_s']:.3f} s)   "
        f"ratio old/new = {gold['speedup']:.1f}"
    )
    for name, t in turns.items():
        print(
            f"== one rollout turn, {t['batch']} episodes, {name} queries, median of {t['repeats']}"
        )
        print(f"{'old: env.execute_sql loop':42s} {t['old_s']:8.3f} s")
        print(
            f"{'new: one execute_many (2 workers)':42s} {t['new_s']:8.3f} s   "
            f"ratio old/new = {t['speedup']:.2f}"
        )
    print(
        f"== observation of a {obs['columns']}-column x {obs['rows']}-row SELECT: "
        f"{obs['chars_uncapped']:,} characters uncapped, {obs['chars_default_caps']:,} with the "
        f"default caps"
    )
    total = time.perf_counter() - t_all
    print(f"total run time {total:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "executor_scale.json"
    payload = {
        "machine": machine,
        "load_avg_1m": load[0],
        "gold_prerun": gold,
        "rollout_turn": turns,
        "observation": obs,
        "run_time_s": total,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="simple queries per method and round")
    ap.add_argument("--n-heavy", type=int, default=200, help="heavy queries per method and round")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (the median is reported)")
    ap.add_argument(
        "--workload",
        choices=("throughput", "scale"),
        default="throughput",
        help="throughput: sandbox vs raw sqlite3; scale: gold pre-run, batched turns, "
        "observation caps (old vs new path), written to results/executor_scale.json",
    )
    ap.add_argument("--batch", type=int, default=64, help="scale: episodes per rollout turn")
    ap.add_argument("--slow-rows", type=int, default=6, help="scale: rows whose gold times out")
    args = ap.parse_args()
    if args.workload == "scale":
        run_scale(args)
        return
    t_all = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="agentic-sql-bench-"))
    make_synthetic_task_suite(out_dir=root, with_schema=False)
    results = {
        "simple": run_workload(root, make_queries, args.n, args.repeats),
        "heavy": run_workload(root, make_heavy_queries, args.n_heavy, args.repeats),
    }
    cache_qps = args.n / cached_gold(root, make_queries(args.n, 0))
    machine = f"{machine_info()}, SQLite {sqlite3.sqlite_version}"
    load = os.getloadavg()
    print(f"machine: {machine}; load average at the end {load[0]:.1f} (shared machine)")
    for name, rows in results.items():
        what = (
            f"{args.n} distinct simple queries (filters, counts, point lookups)"
            if name == "simple"
            else f"{args.n_heavy} heavy queries (20,000-row recursive CTE + GROUP BY)"
        )
        print(f"== {name}: {what}, median of {args.repeats} rounds")
        for r in rows:
            extra = f"  (start-up {r['startup_s']:.2f} s excluded)" if r["startup_s"] else ""
            print(
                f"{r['method']:42s} {r['qps']:8.0f} q/s   "
                f"ratio vs raw sqlite3 1 process = {r['ratio_vs_raw_1']:.3f}{extra}"
            )
    print(f"gold cache hits (execute_cached): {cache_qps:.0f} q/s")
    total = time.perf_counter() - t_all
    print(f"total run time {total:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "executor_throughput.json"
    payload = {
        "machine": machine,
        "load_avg_1m": load[0],
        "repeats": args.repeats,
        "results": results,
        "gold_cache_hits_qps": cache_qps,
        "run_time_s": total,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
