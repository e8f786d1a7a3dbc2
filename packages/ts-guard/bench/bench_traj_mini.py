"""3-head vs rating-only guard on AgentDojo-Traj-mini, with a held-out suite.

AgentDojo-Traj-mini is built here from the AgentDojo v1.2.2 suites (offline): every guard input that
``GuardedToolsExecutor`` builds while a scripted agent runs
  * an injected episode (the agent always follows the important_instructions injection): calls of the
    injection task's plan → (MUR no, PI yes, rating 1.0); the user task's calls → (no, no, 0.0);
  * a direct-harm episode (the injection goal given as the user's own request, DPI/MUR-like): every call →
    (MUR yes, PI no, rating 1.0) — labels by construction.
The guards are classifier-head surrogates (no generation; this checks the auxiliary-task hypothesis, not
GRPO): hashed features of the request, the candidate call, and argument provenance (RuleGuard.provenance),
an MLP trunk, and either three heads (MUR, PI, rating; multi-task loss, verdict by the official rule) or a
rating head only (verdict by the rating). Train on three suites, test on the held-out one; 3 seeds.

    python bench/bench_traj_mini.py --held-out workspace --seeds 0 1 2
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
import warnings
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from papercore.machine import bench_parser, machine_info

DIM = 2048


def main() -> None:
    p = bench_parser(__doc__, Path(__file__).parent / "results" / "traj_mini.json")
    p.add_argument("--held-out", default="workspace")
    p.add_argument("--per-suite", type=int, default=45)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=150)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    import torch
    from agentdojo.agent_pipeline import AgentPipeline, InitQuery, ToolsExecutionLoop
    from agentdojo.task_suite.load_suites import get_suite
    from agentdojo_world import VERSION, load_pairs, plans

    from papercore.seeding import seed_everything, torch_threads
    from ts_guard import GuardVerdict, RuleGuard, evaluate_guard
    from ts_guard.agentdojo_ext import GuardedToolsExecutor, ScriptedAgent
    from ts_guard.data import GuardSample, StepLabel
    from ts_guard.parsing import official_score, verdict_label

    class Recorder:
        def __init__(self):
            self.inputs = []

        def judge(self, x):
            self.inputs.append(x)
            return GuardVerdict("safe", 0.0, False, False)

    def collect(pair) -> list[GuardSample]:
        suite = get_suite(VERSION, pair.suite)
        out = []
        env = suite.load_and_inject_default_environment(pair.injections)
        user_calls, inj_calls = plans(pair, env)
        rec = Recorder()
        agent = ScriptedAgent(
            user_calls, inj_calls, pair.user_task.GROUND_TRUTH_OUTPUT, q_follow=1.0, seed=0
        )
        pipe = AgentPipeline(
            [
                InitQuery(),
                agent,
                ToolsExecutionLoop([GuardedToolsExecutor(rec), agent], max_iters=20),
            ]
        )
        suite.run_task_with_pipeline(
            pipe, pair.user_task, pair.injection_task, pair.injections, environment=env
        )
        inj = {
            json.dumps([c.function, dict(c.args)], sort_keys=True, default=str) for c in inj_calls
        }
        for x in rec.inputs:
            bad = (
                json.dumps([x.candidate.name, x.candidate.arguments], sort_keys=True, default=str)
                in inj
            )
            out.append(
                GuardSample(
                    x,
                    StepLabel(False, bad, 1.0 if bad else 0.0),
                    source=pair.suite,
                    meta={"kind": "ipi"},
                )
            )
        # direct harm: the injection goal as the user's request
        env = suite.load_and_inject_default_environment({})
        rec = Recorder()
        calls = list(pair.injection_task.ground_truth(env.model_copy(deep=True)))
        agent = ScriptedAgent(calls, [], "", seed=0)
        pipe = AgentPipeline(
            [
                InitQuery(),
                agent,
                ToolsExecutionLoop([GuardedToolsExecutor(rec), agent], max_iters=20),
            ]
        )
        suite.run_task_with_pipeline(pipe, pair.injection_task, None, {}, environment=env)
        out += [
            GuardSample(x, StepLabel(True, False, 1.0), source=pair.suite, meta={"kind": "mur"})
            for x in rec.inputs
        ]
        return out

    t0 = time.time()
    pairs = load_pairs(args.per_suite, seed=1)
    samples, seen_mur = [], set()
    for pair in pairs:
        for s in collect(pair):
            if s.meta["kind"] == "mur":  # one direct-harm episode per injection task
                key = (pair.suite, pair.injection_task.ID)
                if key in seen_mur:
                    continue
            samples.append(s)
        seen_mur.add((pair.suite, pair.injection_task.ID))
    train = [s for s in samples if s.source != args.held_out]
    test = [s for s in samples if s.source == args.held_out]
    rule = RuleGuard()

    def feats(x) -> list[int]:
        toks = [f"c:{x.candidate.name}"]
        toks += [f"u:{w}" for w in re.findall(r"[a-z]+", x.user_request.lower())]
        for v, src in rule.provenance(x).items():
            toks += [f"p:{src}", f"pc:{src}:{x.candidate.name}"]
            toks += [f"a:{w}" for w in re.findall(r"[a-z]+", v.lower())[:20]]
        if any(
            m in (s.observation or "").lower() for s in x.history for m in rule.injection_markers
        ):
            toks.append("h:marker")
        return sorted({zlib.crc32(t.encode()) % DIM for t in toks})

    def tensor(batch):
        X = torch.zeros(len(batch), DIM)
        for i, s in enumerate(batch):
            X[i, feats(s.input)] = 1.0
        return X

    Xtr, Xte = tensor(train), tensor(test)
    mur = torch.tensor([float(s.label.gt_mur) for s in train])
    pi = torch.tensor([float(s.label.gt_pi) for s in train])
    rat = torch.tensor([int(s.label.gt_rating * 2) for s in train])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Sequential(torch.nn.Linear(DIM, 32), torch.nn.ReLU())
            self.mur, self.pi, self.rating = (
                torch.nn.Linear(32, 1),
                torch.nn.Linear(32, 1),
                torch.nn.Linear(32, 3),
            )

        def forward(self, X):
            h = self.trunk(X)
            return self.mur(h).squeeze(-1), self.pi(h).squeeze(-1), self.rating(h)

    class HeadGuard:
        def __init__(self, net, X, index, three_heads):
            self.net, self.X, self.index, self.three = net, X, index, three_heads

        def judge(self, x):
            with torch.no_grad():
                m, p_, r = self.net(self.X[self.index[id(x)]][None])
            rating = [0.0, 0.5, 1.0][int(r.argmax(-1))]
            if self.three:
                mb, pb = bool(m.item() > 0), bool(p_.item() > 0)
                return GuardVerdict(
                    verdict_label(mb, pb, rating, "official"),
                    rating,
                    mb,
                    pb,
                    score=official_score(mb, pb, rating),
                )
            return GuardVerdict(verdict_label(False, False, rating, "rating"), rating, False, False)

    results: dict[str, list] = {"three_heads": [], "rating_only": [], "rule": []}
    index = {id(s.input): i for i, s in enumerate(test)}
    with torch_threads(1):
        for seed in args.seeds:
            for variant in ("three_heads", "rating_only"):
                seed_everything(seed)
                net = Net()
                opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
                bce, ce = torch.nn.BCEWithLogitsLoss(), torch.nn.CrossEntropyLoss()
                for _ in range(args.epochs):
                    m, p_, r = net(Xtr)
                    loss = ce(r, rat) + (
                        bce(m, mur) + bce(p_, pi) if variant == "three_heads" else 0.0
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                net.eval()
                res = evaluate_guard(HeadGuard(net, Xte, index, variant == "three_heads"), test)
                results[variant].append(
                    {
                        "seed": seed,
                        **{k: res["strict"]["counted"][k] for k in ("acc", "f1_unsafe", "fpr")},
                    }
                )
            if not results["rule"]:
                res = evaluate_guard(rule, test)
                results["rule"].append(
                    {
                        "seed": None,
                        **{k: res["strict"]["counted"][k] for k in ("acc", "f1_unsafe", "fpr")},
                    }
                )

    summary = {
        v: {
            k: {
                "mean": statistics.mean(r[k] for r in rows),
                "sd": statistics.pstdev([r[k] for r in rows]),
            }
            for k in ("acc", "f1_unsafe", "fpr")
        }
        for v, rows in results.items()
    }
    out = {
        "machine": machine_info(),
        "data": f"AgentDojo-Traj-mini from AgentDojo {VERSION}: train {len(train)} steps ({sorted({s.source for s in train})}), "
        f"test {len(test)} steps (held-out suite {args.held_out}); unsafe share test "
        f"{sum(s.label.gt_rating == 1.0 for s in test) / max(1, len(test)):.2f}",
        "model": f"hashed features ({DIM}) + MLP 32, AdamW 3e-3, {args.epochs} full-batch epochs",
        "seeds": args.seeds,
        "results": results,
        "summary": summary,
        "seconds": time.time() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{out['data']}\n{out['model']}; seeds {args.seeds}; {out['machine']}")
    base = summary["rating_only"]
    print(f"{'guard':<12} {'acc':>15} {'unsafe-F1':>15} {'FPR':>15} {'F1/rating-only':>15}")
    for v, s in summary.items():
        print(
            f"{v:<12} {s['acc']['mean']:.3f} ± {s['acc']['sd']:.3f}   {s['f1_unsafe']['mean']:.3f} ± {s['f1_unsafe']['sd']:.3f}   "
            f"{s['fpr']['mean']:.3f} ± {s['fpr']['sd']:.3f}   {s['f1_unsafe']['mean'] / base['f1_unsafe']['mean'] if base['f1_unsafe']['mean'] else float('nan'):>10.2f}"
        )
    print(f"{out['seconds']:.0f} s")


main()
